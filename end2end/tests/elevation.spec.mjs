// Just-in-time elevation and per-call approval in real browsers, against the real binary and the
// test IdP: a person's agent is refused a tool that needs an elevation (-32004 naming the
// profile); the person requests it on "My access"; an approver, signed in in a second browser
// context, sees the badge count, approves with a comment in the inbox; the agent's call runs;
// when the one-minute elevation runs out (real time) the call is refused again. Then a tool set
// to "approve each call" on the connector page: the call waits (-32005 with an approval id), the
// approver sees the redacted arguments and approves, the same call runs once, a replay waits
// again. Last, nobody approves their own request. This spec starts its own toolgate and IdP
// (identity settings and role mappings of its own) and a small upstream MCP server.
import { test, expect } from '@playwright/test';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { McpHttpClient } from '../mcp-http.mjs';
import {
  freePort, logTail, startProcess, startToyMcp, toolgateBin, toolgateCli, waitUntil,
} from '../servers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const idpEntry = path.join(here, '..', 'idp', 'idp.mjs');

const CLIENT_ID = 'toolgate-e2e-elevation';
const CLIENT_SECRET = 'e2e-elevation-secret';
const TENANT = '11111111-1111-1111-1111-111111111111';
const ROOT_PASSWORD = 'break-glass-password-2';
const TOY = 'vault';
const PROFILE = 'vault-secrets';

const people = {
  dana: { login: 'dana', password: 'pw-dana', upn: 'dana@contoso.com', oid: 'dddddddd-0000-0000-0000-000000000001', name: 'Dana' },
  erin: { login: 'erin', password: 'pw-erin', upn: 'erin@contoso.com', oid: 'eeeeeeee-0000-0000-0000-000000000002', name: 'Erin' },
};

const tool = (name, description, annotations = {}) => ({
  name, description, inputSchema: { type: 'object', properties: {} }, annotations,
});

let dir;
let base;
let adminToken;
let toolgate;
let idp;
let toy;
const started = [];
const ids = {};
let danaToken;
const browserErrors = [];

test.describe.configure({ mode: 'serial' });

async function call(method, url, token, body, expectStatus) {
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  expect(res.status, `${method} ${url} ${JSON.stringify(body)} -> ${res.status} ${text}`).toBe(expectStatus);
  return text ? JSON.parse(text) : null;
}
const api = (method, p, body, status) => call(method, `${base}/api/v1${p}`, adminToken, body, status);

/** Signs `who` in through the login page's SSO button and the IdP's form; waits for hydration. */
async function ssoSignIn(page, who) {
  await page.goto(`${base}/login`);
  await page.waitForLoadState('networkidle');
  await page.locator('a#sso').click();
  await page.locator('input[name=login]').fill(who.login);
  await page.locator('input[name=password]').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.locator('.whoami strong')).toHaveText(who.upn);
  await page.waitForLoadState('networkidle');
}

/** Opens a dashboard page and waits for hydration (event handlers attached). */
async function open(page, p) {
  await page.goto(`${base}${p}`);
  await page.waitForLoadState('networkidle');
}

/** A fresh MCP session of dana's agent (personal token). */
async function agent() {
  const mcp = new McpHttpClient(`${base}/mcp`, danaToken);
  await mcp.initialize();
  return mcp;
}

/** One call of dana's agent in its own session. */
async function agentCall(name, args = {}) {
  const mcp = await agent();
  try {
    return await mcp.callTool(`${TOY}__${name}`, args);
  } finally {
    await mcp.close();
  }
}

function watchPage(page) {
  page.on('pageerror', (e) => browserErrors.push(String(e)));
}

test.beforeAll(async () => {
  test.setTimeout(120_000);
  dir = mkdtempSync(path.join(os.tmpdir(), 'toolgate-e2e-elevation-'));
  const data = path.join(dir, 'data');
  toy = await startToyMcp([
    tool('search_docs', 'Searches the docs.', { readOnlyHint: true }),
    tool('read_secrets', 'Reads the vault secrets.'),
    tool('deploy', 'Deploys a service.'),
  ]);

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
  adminToken = lastLine(await toolgateCli(['token', 'create', '--name', 'e2e-elevation', '--role', 'admin'], { env, cwd: dir }));
  await toolgateCli(['admin', 'create', '--username', 'root'], { env: { ...env, TOOLGATE_ADMIN_PASSWORD: ROOT_PASSWORD }, cwd: dir });
  toolgate = startProcess('toolgate', [toolgateBin, 'serve'], { env, cwd: dir, logFile: path.join(dir, 'toolgate.log') });
  started.push(toolgate);
  await waitUntil('toolgate', toolgate, async () => (await fetch(`${base}/readyz`)).status === 200);
  const identity = await api('GET', '/settings/identity', undefined, 200);

  const accounts = Object.values(people).map((p) => ({
    login: p.login,
    password: p.password,
    claims: { tid: TENANT, oid: p.oid, preferred_username: p.upn, email: p.upn, name: p.name, groups: [] },
  }));
  idp = startProcess('idp', [process.execPath, idpEntry], {
    env: {
      ...process.env,
      IDP_PORT: '0',
      IDP_CLIENT_ID: CLIENT_ID,
      IDP_CLIENT_SECRET: CLIENT_SECRET,
      IDP_REDIRECT_URI: identity.redirect_uri,
      IDP_ACCOUNTS: JSON.stringify(accounts),
    },
    cwd: dir,
    logFile: path.join(dir, 'idp.log'),
  });
  started.push(idp);
  await waitUntil('idp', idp, () => readFileSync(idp.logFile, 'utf8').includes('IDP READY'));
  const issuer = readFileSync(idp.logFile, 'utf8').match(/IDP READY (\S+)/)[1];

  // Dana works on the docs; Erin approves. The connector's first discovery approves its tools.
  for (const key of ['dana', 'erin']) {
    const u = await api('POST', '/users', { user_name: people[key].upn, display_name: people[key].name }, 201);
    ids[key] = u.id;
  }
  const devs = await api('POST', '/groups', { display_name: 'e2e-devs' }, 201);
  const approvers = await api('POST', '/groups', { display_name: 'e2e-approvers' }, 201);
  ids.devs = devs.id;
  ids.approvers = approvers.id;
  await api('PUT', `/groups/${devs.id}/members/${ids.dana}`, undefined, 204);
  await api('PUT', `/groups/${approvers.id}/members/${ids.erin}`, undefined, 204);
  const created = await api('POST', '/connectors', { name: TOY, url: toy.url }, 201);
  expect(created.discovery.ok, JSON.stringify(created.discovery)).toBe(true);
  ids.connector = created.connector?.id ?? created.id;
  await api('PUT', `/groups/${devs.id}/policies/${ids.connector}`, { allow: ['search_docs', 'deploy'], block: [] }, 200);
  await api('POST', '/elevation/profiles', {
    name: PROFILE,
    description: 'Read the vault for an incident.',
    targets: [{ connector: TOY, tools: ['read_secrets'] }],
    eligible_groups: [devs.id],
    approver_group: approvers.id,
    max_minutes: 1,
    justification_required: true,
    requester_sets_duration: true,
  }, 201);
  ({ token: danaToken } = await api('POST', `/users/${ids.dana}/tokens`, { name: 'dana-agent' }, 201));

  await api('PUT', '/settings/identity', {
    oidc: {
      issuer,
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      display_name: 'Contoso Entra',
      match_by: 'user_name',
      jit_provisioning: false,
      use_groups_claim: false,
    },
    role_mappings: { admin: [], approver: [approvers.id], auditor: [] },
  }, 200);
});

test.afterAll(async () => {
  for (const p of started.reverse()) await p.stop();
  started.length = 0;
  await toy?.close();
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
  expect(browserErrors, 'uncaught errors in the page').toEqual([]);
});

test('an elevation is requested, approved in the inbox, unlocks the tool and runs out after a minute', async ({ page, browser }) => {
  test.setTimeout(240_000);
  watchPage(page);

  // The agent may search, but reading secrets needs the profile.
  const allowed = await agentCall('search_docs');
  expect(allowed.error, JSON.stringify(allowed)).toBeUndefined();
  const refused = await agentCall('read_secrets');
  expect(refused.result, JSON.stringify(refused)).toBeUndefined();
  expect(refused.error.code).toBe(-32004);
  expect(refused.error.message).toContain(`"${PROFILE}"`);
  expect(refused.error.data.link).toBe(`${base}/access?profile=${PROFILE}`);

  // Dana follows the link: the profile is preselected, with its contents and maximum.
  await ssoSignIn(page, people.dana);
  await expect(page.locator('span#role')).toHaveText('user');
  await expect(page.locator('nav.sidebar').getByRole('link', { name: 'Approvals' })).toHaveCount(0);
  await open(page, `/access?profile=${PROFILE}`);
  await expect(page.locator('#my-group-names')).toHaveText('e2e-devs');
  await expect(page.locator('#no-open-elevations')).toBeVisible();
  await expect(page.locator('#request-profile')).toHaveValue(PROFILE);
  await expect(page.locator('#request-profile-summary')).toContainText(`${TOY}: read_secrets`);
  const minutes = page.locator('#request-form input[name=minutes]');
  await expect(minutes).toHaveAttribute('max', '1');
  await page.locator('#request-form textarea[name=justification]').fill('INC-7: rotate the leaked key');
  await minutes.fill('1');
  await page.locator('#request-submit').click();
  await expect(page.locator('#request-result')).toContainText(`Requested "${PROFILE}"`);
  const mine = page.locator(`#open-elevations tr[data-profile="${PROFILE}"]`);
  await expect(mine).toHaveAttribute('data-status', 'pending');
  await expect(mine.locator('button.withdraw-request')).toBeVisible();

  // Still refused while pending.
  expect((await agentCall('read_secrets')).error?.code).toBe(-32004);

  // Erin, in a second browser, sees the count and the request with everything she needs.
  const erinContext = await browser.newContext();
  const erin = await erinContext.newPage();
  watchPage(erin);
  try {
    await ssoSignIn(erin, people.erin);
    await expect(erin.locator('span#role')).toHaveText('approver');
    await expect(erin.locator('#nav-approvals-count')).toHaveText('1');
    await erin.locator('nav.sidebar').getByRole('link', { name: 'Approvals' }).click();
    await expect(erin).toHaveURL(`${base}/approvals`);
    await erin.waitForLoadState('networkidle');
    const card = erin.locator('article.request[data-subject="dana@contoso.com"]');
    await expect(card).toHaveCount(1);
    await expect(card.locator('.justification')).toHaveText('INC-7: rotate the leaked key');
    await expect(card.locator('.duration')).toHaveText('1 min');
    await expect(card.locator('.profile-contents')).toContainText(`${TOY}: read_secrets`);
    await expect(card.locator('.profile-contents')).toContainText('e2e-approvers');
    // Her recent activity: the agent's refused call of read_secrets.
    await expect(card.locator('table.activity-table')).toContainText('read_secrets');
    await card.locator('input[name=comment]').fill('ok for INC-7');
    await card.getByRole('button', { name: 'Approve' }).click();
    await expect(erin.locator('#no-pending-elevations')).toBeVisible();
    await expect(erin.locator('#approvals-errors .error')).toHaveCount(0);
    const activeRow = erin.locator('#active-table tr[data-subject="dana@contoso.com"]');
    await expect(activeRow).toContainText(PROFILE);
    await expect(activeRow).toContainText('ok for INC-7');
    await expect(erin.locator('#nav-approvals-count')).toHaveCount(0);
  } finally {
    await erinContext.close();
  }

  // The agent's call now runs.
  const granted = await agentCall('read_secrets');
  expect(granted.error, JSON.stringify(granted)).toBeUndefined();
  expect(granted.result.content).toEqual([{ type: 'text', text: 'called read_secrets' }]);

  // Dana sees it active with the time left.
  await page.reload();
  await page.waitForLoadState('networkidle');
  await expect(mine).toHaveAttribute('data-status', 'active');
  await expect(mine.locator('.remaining')).toContainText('left');
  const secs = Number(await mine.locator('.remaining').getAttribute('data-secs'));
  expect(secs).toBeGreaterThan(0);
  expect(secs).toBeLessThanOrEqual(60);

  // Real time passes: once the minute is over the same call is refused again.
  const list = await api('GET', `/elevations?subject=${ids.dana}&status=active`, undefined, 200);
  const items = Array.isArray(list) ? list : list.items;
  const elevation = items.find((e) => e.profile_name === PROFILE && e.status === 'active');
  expect(elevation, JSON.stringify(list)).toBeTruthy();
  const expiresAt = Date.parse(elevation.expires_at);
  let refusedAt = null;
  const deadline = Date.now() + 75_000;
  while (Date.now() < deadline) {
    const r = await agentCall('read_secrets');
    if (r.error) {
      expect(r.error.code, JSON.stringify(r)).toBe(-32004);
      refusedAt = Date.now();
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000)); // polling interval of a bounded loop
  }
  expect(refusedAt, 'the call is refused again after the elevation ran out').not.toBeNull();
  // Not before its expiry (1 s of slack for the clocks of two processes on one machine).
  expect(refusedAt).toBeGreaterThanOrEqual(expiresAt - 1000);

  // "My access" moves it to the history.
  await page.reload();
  await expect(page.locator('#history-table tr[data-status="expired"]')).toContainText(PROFILE);
});

test('a tool marked "approve each call" waits for the approver, runs once, and a replay waits again', async ({ page, browser }) => {
  test.setTimeout(120_000);
  watchPage(page);

  // The local admin marks deploy on the connector page.
  await page.goto(`${base}/login`);
  await page.waitForLoadState('networkidle');
  await page.locator('input[name=username]').fill('root');
  await page.locator('input[name=password]').fill(ROOT_PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expect(page).toHaveURL(`${base}/`);
  await open(page, `/connectors/${TOY}`);
  const row = page.locator('#catalog-table tr[data-tool="deploy"]');
  await row.locator('select.approval-select').selectOption(ids.approvers);
  await expect(row).toHaveAttribute('data-approval', ids.approvers);
  await page.reload();
  await expect(page.locator('#catalog-table tr[data-tool="deploy"] select.approval-select')).toHaveValue(ids.approvers);
  const tools = await api('GET', `/connectors/${TOY}/tools`, undefined, 200);
  expect(tools.find((t) => t.name === 'deploy').approval_group).toBe(ids.approvers);

  // A local admin has no directory identity: the inbox says it cannot decide.
  await open(page, '/approvals');
  await expect(page.locator('#local-cannot-approve')).toBeVisible();

  // The agent's call waits, with an approval id.
  const args = { service: 'billing-api', version: '2.4.1' };
  const waiting = await agentCall('deploy', args);
  expect(waiting.result, JSON.stringify(waiting)).toBeUndefined();
  expect(waiting.error.code).toBe(-32005);
  const approvalId = waiting.error.data.approval_id;
  expect(approvalId).toBeTruthy();
  // Asking again with the same arguments does not make a second request.
  const again = await agentCall('deploy', args);
  expect(again.error?.code).toBe(-32005);
  expect(again.error.data.approval_id).toBe(approvalId);

  const erinContext = await browser.newContext();
  const erin = await erinContext.newPage();
  watchPage(erin);
  try {
    await ssoSignIn(erin, people.erin);
    await expect(erin.locator('#nav-approvals-count')).toHaveText('1');
    await open(erin, '/approvals');
    const card = erin.locator(`article.call[data-approval="${approvalId}"]`);
    await expect(card.locator('.caller')).toContainText('dana@contoso.com');
    await expect(card.locator('.tool')).toHaveText('deploy');
    await expect(card.locator('.connector')).toHaveText(TOY);
    await expect(card.locator('pre.args')).toContainText('"version": "2.4.1"');
    await expect(card.locator('pre.args')).toContainText('"service": "billing-api"');
    await card.locator('input[name=comment]').fill('go ahead');
    await card.getByRole('button', { name: 'Approve' }).click();
    await expect(erin.locator('#no-pending-calls')).toBeVisible();
    await expect(erin.locator('#approvals-errors .error')).toHaveCount(0);

    // The same call runs once; a replay waits for a new approval.
    const ran = await agentCall('deploy', args);
    expect(ran.error, JSON.stringify(ran)).toBeUndefined();
    expect(ran.result.content).toEqual([{ type: 'text', text: 'called deploy' }]);
    const replay = await agentCall('deploy', args);
    expect(replay.error?.code, JSON.stringify(replay)).toBe(-32005);
    expect(replay.error.data.approval_id).not.toBe(approvalId);

    // The history shows the used approval; the new request waits in the inbox.
    await open(erin, '/approvals?kind=calls&status=used');
    await expect(erin.locator(`#history-calls tr[data-approval="${approvalId}"]`)).toHaveAttribute('data-status', 'used');
    await expect(erin.locator(`article.call[data-approval="${replay.error.data.approval_id}"]`)).toHaveCount(1);
    await expect(erin.locator('#nav-approvals-count')).toHaveText('1');
  } finally {
    await erinContext.close();
  }
});

test('nobody approves their own request', async ({ page }) => {
  watchPage(page);
  // Erin becomes eligible too, asks, and tries to approve herself.
  await api('PUT', `/groups/${ids.devs}/members/${ids.erin}`, undefined, 204);
  await ssoSignIn(page, people.erin);
  await open(page, '/access');
  await expect(page.locator('#request-profile')).toHaveValue(PROFILE);
  await page.locator('#request-form textarea[name=justification]').fill('my own');
  await page.locator('#request-submit').click();
  await expect(page.locator('#request-result')).toContainText('Requested');

  await open(page, '/approvals');
  const card = page.locator('article.request[data-subject="erin@contoso.com"]');
  await card.getByRole('button', { name: 'Approve' }).click();
  await expect(page.locator('#approvals-errors .error')).toContainText('nobody approves their own request');
  await expect(card).toHaveCount(1);

  // She withdraws it from "My access".
  await open(page, '/access');
  const mine = page.locator(`#open-elevations tr[data-profile="${PROFILE}"]`);
  await mine.locator('button.withdraw-request').click();
  await expect(page.locator('#no-open-elevations')).toBeVisible();
  await expect(page.locator('#history-table tr[data-status="cancelled"]')).toContainText(PROFILE);
});

test('admins create, edit and delete profiles and set the webhook in the editor', async ({ page }) => {
  watchPage(page);
  await page.goto(`${base}/login`);
  await page.waitForLoadState('networkidle');
  await page.locator('input[name=username]').fill('root');
  await page.locator('input[name=password]').fill(ROOT_PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expect(page).toHaveURL(`${base}/`);
  await page.locator('nav.sidebar').getByRole('link', { name: 'Elevation profiles' }).click();
  await expect(page).toHaveURL(`${base}/elevation-profiles`);
  await page.waitForLoadState('networkidle');
  await expect(page.locator(`#profiles-table tr[data-profile="${PROFILE}"] td.targets`)).toHaveText(`${TOY}: read_secrets`);

  // A profile nobody may ask for is refused with the reason.
  const form = page.locator('#profile-form');
  await form.locator('input[name=name]').fill('deploy-window');
  await form.locator('select[name="target_connector[]"]').first().selectOption(TOY);
  await form.locator('textarea[name="target_tools[]"]').first().fill('deploy,\nsearch_*');
  await form.locator('select[name=approver_group]').selectOption(ids.approvers);
  await form.locator('input[name=max_minutes]').fill('30');
  await page.locator('#profile-save').click();
  await expect(page.locator('#profile-editor .error')).toContainText('eligible_groups');
  await form.getByRole('checkbox', { name: 'e2e-devs' }).check();
  await form.locator('input[name=ticket_required]').check();
  await page.locator('#profile-save').click();
  await expect(page.locator('#profile-saved')).toHaveText('Saved "deploy-window".');
  const row = page.locator('#profiles-table tr[data-profile="deploy-window"]');
  await expect(row.locator('td.targets')).toHaveText(`${TOY}: deploy, search_*`);
  await expect(row).toContainText('30 min');
  await expect(row.locator('td.flags')).toContainText('ticket');
  let stored = (await api('GET', '/elevation/profiles', undefined, 200)).find((p) => p.name === 'deploy-window');
  expect(stored).toMatchObject({ max_minutes: 30, ticket_required: true, eligible_groups: [ids.devs], approver_group: ids.approvers });

  // Edit: the form is filled with the profile; a shorter maximum and a risk level.
  await row.getByRole('link', { name: 'Edit' }).click();
  await expect(page).toHaveURL(/edit=/);
  await expect(form.locator('input[name=name]')).toHaveValue('deploy-window');
  await expect(form.locator('input[name=ticket_required]')).toBeChecked();
  await form.locator('input[name=max_minutes]').fill('15');
  await form.locator('select[name="target_risk[]"]').first().selectOption('low');
  await page.locator('#profile-save').click();
  await expect(row).toContainText('15 min');
  stored = (await api('GET', '/elevation/profiles', undefined, 200)).find((p) => p.name === 'deploy-window');
  expect(stored.max_minutes).toBe(15);
  expect(stored.targets).toEqual([{ connector: TOY, tools: ['deploy', 'search_*'], max_risk: 'low' }]);

  // Delete asks first.
  await row.locator('button.delete-profile').click();
  await expect(row.locator('.confirm-delete')).toContainText('Delete "deploy-window"?');
  await row.locator('button.confirm-delete-profile').click();
  await expect(page.locator('#profiles-table tr[data-profile="deploy-window"]')).toHaveCount(0);
  expect((await api('GET', '/elevation/profiles', undefined, 200)).some((p) => p.name === 'deploy-window')).toBe(false);

  // The webhook is write-only: the page only says it is configured.
  const settings = page.locator('#elevation-settings-form');
  await expect(page.locator('#webhook-state')).toHaveText('not configured');
  await settings.locator('input[name=webhook_url]').fill('https://hooks.example.com/services/T000/SECRET');
  await settings.locator('select[name=webhook_format]').selectOption('slack');
  await settings.locator('input[name=approval_ttl_minutes]').fill('20');
  await page.locator('#elevation-settings-save').click();
  await expect(page.locator('#webhook-state')).toHaveText('configured');
  await expect(page.locator('body')).not.toContainText('SECRET');
  const saved = await api('GET', '/settings/elevation', undefined, 200);
  expect(saved).toMatchObject({ webhook_format: 'slack', approval_ttl_minutes: 20, webhook_configured: true });
  await settings.locator('input[name=clear_webhook]').check();
  await page.locator('#elevation-settings-save').click();
  await expect(page.locator('#webhook-state')).toHaveText('not configured');
});
