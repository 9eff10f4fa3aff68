// Sign-in with an OpenID Provider (the test IdP in end2end/idp standing in for Microsoft Entra ID)
// in a real browser: people provisioned by SCIM sign in through the IdP and get the dashboard role
// of their mapped groups; unknown people are refused; disabling a person by SCIM ends their
// sessions at once. This spec starts its own toolgate (fresh data folder) and IdP, so the identity
// settings it saves do not touch the toolgate of the global setup.
import { test, expect } from '@playwright/test';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  freePort, logTail, startProcess, toolgateBin, toolgateCli, waitUntil,
} from '../servers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const idpEntry = path.join(here, '..', 'idp', 'idp.mjs');
const screenshotPath = path.join(here, '..', 'test-results', 'oidc-auditor.png');

const CLIENT_ID = 'toolgate-e2e';
const CLIENT_SECRET = 'e2e-client-secret';
const TENANT = '11111111-1111-1111-1111-111111111111';
const AUDITORS_ENTRA_ID = '33333333-3333-3333-3333-333333333333';
const STAFF_ENTRA_ID = '44444444-4444-4444-4444-444444444444';
const CONNECTOR = 'oidc-secret-connector';
const ROOT_PASSWORD = 'break-glass-password-1';

const people = {
  alice: { login: 'alice', password: 'pw-alice', upn: 'alice@contoso.com', oid: 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', name: 'Alice', groups: [AUDITORS_ENTRA_ID] },
  carol: { login: 'carol', password: 'pw-carol', upn: 'carol@contoso.com', oid: 'cccccccc-cccc-cccc-cccc-cccccccccccc', name: 'Carol', groups: [STAFF_ENTRA_ID] },
  mallory: { login: 'mallory', password: 'pw-mallory', upn: 'mallory@contoso.com', oid: 'dddddddd-dddd-dddd-dddd-dddddddddddd', name: 'Mallory', groups: [] },
};

// Filled in by beforeAll.
let dir;
let base;
let idpIssuer;
let adminToken;
let scimToken;
let toolgate;
let idp;
const started = [];
const ids = {};

// The tests build on each other (the audit test reads what the sign-ins left behind).
test.describe.configure({ mode: 'serial' });

async function call(method, url, { token, body, contentType = 'application/json' }, expectStatus) {
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType, Accept: contentType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  expect(res.status, `${method} ${url} ${JSON.stringify(body)} -> ${res.status} ${text}`).toBe(expectStatus);
  return text ? JSON.parse(text) : null;
}
const api = (method, p, body, status) => call(method, `${base}/api/v1${p}`, { token: adminToken, body }, status);
const scim = (method, p, body, status) => call(method, `${base}/scim/v2${p}`, {
  token: scimToken, body, contentType: 'application/scim+json',
}, status);

/** Signs `who` in through the login page's SSO button and the IdP's form. */
async function ssoSignIn(page, who) {
  await page.goto(`${base}/login`);
  const sso = page.locator('a#sso');
  await expect(sso).toHaveText('Sign in with Contoso Entra');
  await expect(sso).toHaveAttribute('href', '/auth/oidc/login');
  await sso.click();
  await expect(page).toHaveURL(new RegExp(`^${idpIssuer}/interaction/`));
  await page.locator('input[name=login]').fill(who.login);
  await page.locator('input[name=password]').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test.beforeAll(async () => {
  test.setTimeout(120_000);
  dir = mkdtempSync(path.join(os.tmpdir(), 'toolgate-e2e-oidc-'));
  const data = path.join(dir, 'data');

  // Toolgate first: the IdP must know toolgate's redirect URI.
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    TOOLGATE_LISTEN: `127.0.0.1:${port}`,
    TOOLGATE_DATABASE_URL: `sqlite://${data}/tg.db`,
    TOOLGATE_DATA_DIR: data,
    RUST_LOG: process.env.RUST_LOG || 'info',
  };
  delete env.TOOLGATE_PUBLIC_URL;
  await toolgateCli(['migrate'], { env, cwd: dir });
  const lastLine = (out) => out.trim().split('\n').pop().trim();
  adminToken = lastLine(await toolgateCli(['token', 'create', '--name', 'e2e-oidc', '--role', 'admin'], { env, cwd: dir }));
  scimToken = lastLine(await toolgateCli(['token', 'create', '--name', 'entra', '--role', 'scim'], { env, cwd: dir }));
  await toolgateCli(['admin', 'create', '--username', 'root'], { env: { ...env, TOOLGATE_ADMIN_PASSWORD: ROOT_PASSWORD }, cwd: dir });
  toolgate = startProcess('toolgate', [toolgateBin, 'serve'], { env, cwd: dir, logFile: path.join(dir, 'toolgate.log') });
  started.push(toolgate);
  await waitUntil('toolgate', toolgate, async () => (await fetch(`${base}/readyz`)).status === 200);

  const before = await api('GET', '/settings/identity', undefined, 200);
  expect(before.redirect_uri).toBe(`${base}/auth/oidc/callback`);
  expect(before.scim_tenant_url).toBe(`${base}/scim/v2`);

  // The IdP, with Entra-like accounts.
  const accounts = Object.values(people).map((p) => ({
    login: p.login,
    password: p.password,
    claims: {
      tid: TENANT, oid: p.oid, preferred_username: p.upn, email: p.upn, name: p.name, groups: p.groups,
    },
  }));
  const idpPort = await freePort();
  idp = startProcess('idp', [process.execPath, idpEntry], {
    env: {
      ...process.env,
      IDP_PORT: String(idpPort),
      IDP_CLIENT_ID: CLIENT_ID,
      IDP_CLIENT_SECRET: CLIENT_SECRET,
      IDP_REDIRECT_URI: before.redirect_uri,
      IDP_ACCOUNTS: JSON.stringify(accounts),
      IDP_DEBUG: '1',
    },
    cwd: dir,
    logFile: path.join(dir, 'idp.log'),
  });
  started.push(idp);
  await waitUntil('idp', idp, () => readFileSync(idp.logFile, 'utf8').includes('IDP READY'));
  idpIssuer = readFileSync(idp.logFile, 'utf8').match(/IDP READY (\S+)/)[1];
  expect(idpIssuer).toBe(`http://127.0.0.1:${idpPort}`);

  // Entra's provisioning: alice and carol (not mallory), alice in the auditors' group, carol in a
  // group that maps to no role.
  for (const key of ['alice', 'carol']) {
    const p = people[key];
    const u = await scim('POST', '/Users', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: p.upn, externalId: p.oid, active: true, displayName: p.name,
    }, 201);
    ids[key] = u.id;
  }
  const auditors = await scim('POST', '/Groups', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
    displayName: 'Toolgate Auditors', externalId: AUDITORS_ENTRA_ID, members: [{ value: ids.alice }],
  }, 201);
  await scim('POST', '/Groups', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
    displayName: 'Contoso Staff', externalId: STAFF_ENTRA_ID, members: [{ value: ids.carol }],
  }, 201);
  ids.auditors = auditors.id;

  // A connector that an auditor must not see.
  await api('POST', '/connectors', {
    name: CONNECTOR,
    url: process.env.E2E_UPSTREAM_URL || 'http://127.0.0.1:9/mcp',
    transport: 'streamable_http',
    headers: { 'X-Secret': 'auditor-must-not-see' },
  }, 201);

  const saved = await api('PUT', '/settings/identity', {
    oidc: {
      issuer: idpIssuer,
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      display_name: 'Contoso Entra',
      match_by: 'user_name',
      jit_provisioning: false,
      use_groups_claim: false,
    },
    role_mappings: { admin: [], approver: [], auditor: [ids.auditors] },
  }, 200);
  expect(JSON.stringify(saved)).not.toContain(CLIENT_SECRET);
});

test.afterAll(async () => {
  for (const p of started.reverse()) await p.stop();
  started.length = 0;
  if (!dir) return;
  if (process.env.KEEP_TEST_DIR === '1') console.log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus) {
    for (const p of [toolgate, idp]) {
      if (!p) continue;
      const tail = logTail(p.logFile);
      await testInfo.attach(`${p.name}.log`, { body: tail, contentType: 'text/plain' });
      console.log(`----- tail of ${p.name} log (${p.logFile}) -----\n${tail}`);
    }
  }
});

test('alice signs in through Entra and gets the auditor dashboard', async ({ page }) => {
  const browserErrors = [];
  page.on('pageerror', (e) => browserErrors.push(String(e)));

  await ssoSignIn(page, people.alice);
  await expect(page).toHaveURL(`${base}/`);
  await expect(page.locator('span#role')).toHaveText('auditor');
  await expect(page.locator('.whoami strong')).toHaveText(people.alice.upn);
  const nav = page.locator('nav.sidebar');
  await expect(nav.getByRole('link')).toHaveText(['Overview', 'Connect your agent', 'My access', 'Audit']);
  for (const name of ['Connectors', 'Groups & policies', 'Settings', 'Users', 'Approvals']) {
    await expect(nav.getByRole('link', { name })).toHaveCount(0);
  }
  await expect(page.locator('#no-pages')).toHaveCount(0);
  await page.waitForLoadState('networkidle');
  await page.screenshot({ path: screenshotPath, fullPage: true });
  await test.info().attach('oidc-auditor', { path: screenshotPath, contentType: 'image/png' });

  // The audit page is hers.
  await nav.getByRole('link', { name: 'Audit', exact: true }).click();
  await expect(page).toHaveURL(`${base}/audit`);
  await expect(page.locator('#audit-table')).toBeVisible();

  // Connectors are not: a direct visit shows no connector data, only a refusal.
  await page.goto(`${base}/connectors`);
  await expect(page.getByRole('alert')).toContainText('your role (auditor) does not give access to this page');
  await expect(page.locator('#connectors-table')).toHaveCount(0);
  await expect(page.locator('body')).not.toContainText(CONNECTOR);
  await expect(page.locator('body')).not.toContainText('X-Secret');

  // Nor can she add one: the server function behind the form refuses her session.
  // (Same-origin, as the hydrated form sends it: a request without Origin is refused as cross-site.)
  const add = await page.request.post(`${base}/fn/add_connector`, {
    headers: { Origin: base },
    form: { name: 'auditor-made', url: 'http://127.0.0.1:9/mcp', headers: '' },
  });
  expect(add.status()).toBe(403);
  expect(await add.text()).toContain('your role (auditor) does not give access to this page');
  const list = await api('GET', '/connectors', undefined, 200);
  const names = (Array.isArray(list) ? list : list.items).map((c) => c.name);
  expect(names).toEqual([CONNECTOR]);

  expect(browserErrors, 'uncaught errors in the page').toEqual([]);
});

/** An MCP initialize with `token`: the HTTP status. */
async function mcpInitialize(token) {
  const res = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json, text/event-stream', 'Content-Type': 'application/json' },
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e', version: '1' } },
    }),
  });
  await res.body?.cancel();
  return res.status;
}

test('carol, in no mapped group, signs in with role user and lands on Connect', async ({ page, browser }) => {
  await ssoSignIn(page, people.carol);
  await expect(page).toHaveURL(`${base}/connect`);
  await expect(page.locator('span#role')).toHaveText('user');
  await expect(page.locator('nav.sidebar').getByRole('link')).toHaveText(['Connect your agent', 'My access']);
  await expect(page.locator('#snippet-claude')).toContainText(`${base}/mcp`);
  await expect(page.locator('#no-consents')).toBeVisible();
  await page.waitForLoadState('networkidle');

  // A personal token for a script: read-only, a week.
  const form = page.locator('#token-form');
  await form.locator('input[name=name]').fill('carol-script');
  await form.locator('select[name=expires_in_days]').selectOption('7');
  await form.locator('input[value="mcp:tools"]').uncheck();
  await form.getByRole('button', { name: 'Create token' }).click();
  const token = (await page.locator('#new-token').textContent()).trim();
  expect(token).toMatch(/^tgp_/);
  const row = page.locator('#tokens-table tr[data-token="carol-script"]');
  await expect(row.locator('td.scopes')).toHaveText('mcp:read');
  await expect(row.locator('td.status')).toHaveText('active');
  await expect(row.locator('td.expires')).not.toHaveText('never');
  expect(await mcpInitialize(token)).toBe(200);
  await row.getByRole('button', { name: 'revoke' }).click();
  await expect(page.locator('#tokens-table tr[data-token="carol-script"]')).toHaveCount(0);
  expect(await mcpInitialize(token)).toBe(401);

  // An agent she authorizes (a pre-registered public client, authorization code with PKCE)
  // is listed, and revoking it ends its refresh token.
  const redirectUri = 'http://127.0.0.1:9/callback';
  const { client } = await api('POST', '/oauth/clients', { name: 'E2E Agent', redirect_uris: [redirectUri], confidential: false }, 201);
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  await page.route('http://127.0.0.1:9/**', (route) => route.fulfill({ status: 200, contentType: 'text/plain', body: 'agent callback' }));
  const authorize = new URL(`${base}/oauth/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: client.id, redirect_uri: redirectUri, code_challenge: challenge,
    code_challenge_method: 'S256', state: 'e2e-state', scope: 'mcp:read mcp:tools', resource: `${base}/mcp`,
  })) authorize.searchParams.set(k, v);
  await page.goto(authorize.href);
  await expect(page.locator('#consent-client')).toHaveText('E2E Agent');
  await page.locator('#consent-allow').click();
  await page.waitForURL((u) => u.href.startsWith(redirectUri));
  const code = new URL(page.url()).searchParams.get('code');
  const exchange = await fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: client.id, code_verifier: verifier, resource: `${base}/mcp` }),
  });
  const tokens = await exchange.json();
  expect(exchange.status, JSON.stringify(tokens)).toBe(200);

  // An admin sees the agent on the Users page, in carol's row.
  const adminContext = await browser.newContext();
  const admin = await adminContext.newPage();
  await admin.goto(`${base}/login`);
  await admin.locator('input[name=username]').fill('root');
  await admin.locator('input[name=password]').fill(ROOT_PASSWORD);
  await admin.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expect(admin).toHaveURL(`${base}/`);
  await admin.goto(`${base}/users`);
  await expect(admin.locator(`tr[data-user="${people.carol.upn}"] td.consents div[data-client="${client.id}"]`)).toContainText('E2E Agent');
  await adminContext.close();

  await page.goto(`${base}/connect`);
  await page.waitForLoadState('networkidle');
  const agent = page.locator(`#consents-table tr[data-client="${client.id}"]`);
  await expect(agent.locator('td.name')).toContainText('E2E Agent');
  await expect(agent.locator('td.scopes')).toHaveText('mcp:read mcp:tools');
  await agent.getByRole('button', { name: 'Revoke' }).click();
  await expect(page.locator('#no-consents')).toBeVisible();
  const refresh = await fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: client.id }),
  });
  expect(refresh.status).toBe(400);
  expect((await refresh.json()).error).toBe('invalid_grant');
});

test("an admin's test sign-in shows what would happen and changes nothing", async ({ page }) => {
  // The local break-glass admin signs in and tests the configuration with alice's account.
  await page.goto(`${base}/login`);
  await page.locator('input[name=username]').fill('root');
  await page.locator('input[name=password]').fill(ROOT_PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expect(page).toHaveURL(`${base}/`);
  await page.goto(`${base}/settings`);
  await expect(page.locator('#test-sign-in')).toHaveAttribute('href', '/auth/oidc/login?test=1');
  await page.goto(`${base}/auth/oidc/login?test=1`);
  await expect(page).toHaveURL(new RegExp(`^${idpIssuer}/interaction/`));
  await page.locator('input[name=login]').fill(people.alice.login);
  await page.locator('input[name=password]').fill(people.alice.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const result = page.locator('#test-result');
  await expect(result).toContainText(people.alice.upn);
  await expect(result).toContainText(`entra:${TENANT}:${people.alice.oid}`);
  await expect(result).toContainText('auditor');
  // Still the admin, not alice.
  await page.goto(`${base}/`);
  await expect(page.locator('span#role')).toHaveText('admin');
  await expect(page.locator('.whoami strong')).toHaveText('root');
  // A non-admin may not start a test.
  await page.context().clearCookies();
  await page.goto(`${base}/auth/oidc/login?test=1`);
  await expect(page).toHaveURL(`${base}/login?error=admins_only`);
});

test('mallory, not provisioned, is refused', async ({ page }) => {
  await ssoSignIn(page, people.mallory);
  await expect(page).toHaveURL(`${base}/login?error=not_provisioned`);
  await expect(page.locator('#signin-error')).toContainText('not provisioned');
  await expect(page.locator('span#role')).toHaveCount(0);
  // Still not signed in.
  await page.goto(`${base}/`);
  await expect(page).toHaveURL(`${base}/login`);
});

test('disabling alice by SCIM ends her session at once', async ({ page }) => {
  await ssoSignIn(page, people.alice);
  await expect(page).toHaveURL(`${base}/`);
  await expect(page.locator('span#role')).toHaveText('auditor');

  await scim('PATCH', `/Users/${ids.alice}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
    Operations: [{ op: 'replace', path: 'active', value: false }],
  }, 200);

  await page.reload();
  await expect(page).toHaveURL(`${base}/login`);
  await expect(page.locator('span#role')).toHaveCount(0);

  // Signing in again: the IdP still knows her (its session cookie sends her straight back), but
  // toolgate refuses.
  await page.locator('a#sso').click();
  await expect(page).toHaveURL(`${base}/login?error=disabled`);
  await expect(page.locator('#signin-error')).toContainText('disabled');
});

test('the audit log has the OIDC sign-ins and the refusals', async () => {
  const { items } = await api('GET', '/audit?limit=1000', undefined, 200);
  const has = (kind, principal) => items.some((e) => e.kind === kind && e.principal === principal);
  const summary = JSON.stringify(items.map((e) => [e.kind, e.principal, e.decision]));
  expect(has('signin.oidc', people.alice.upn), summary).toBe(true);
  expect(has('signin.oidc', people.carol.upn), summary).toBe(true);
  expect(has('signin.failed', people.mallory.upn), summary).toBe(true);
  expect(has('signin.failed', people.alice.upn), summary).toBe(true);
  expect(has('signin.oidc', people.mallory.upn), summary).toBe(false);
  expect(has('oauth.consent_revoked', people.carol.upn), summary).toBe(true);
  expect(has('token.personal_created', people.carol.upn), summary).toBe(true);
  // What carol's token and agent got is never in the audit log.
  expect(JSON.stringify(items)).not.toMatch(/tgp_[A-Za-z0-9]{12}|tgr_[A-Za-z0-9]{12}/);
});
