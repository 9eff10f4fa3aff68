// Agent sign-in in the dashboard, in a real browser: a service principal created with a group
// (its secret shown once and accepted by the token endpoint), rotated (the new secret works, the
// old one stops), its activity; a confidential OAuth client registered (secret shown once) and
// disabled; the Entra setting's validation; and the Connect page's snippets with the MCP URL.
// Secrets never reach the audit log. Runs against the global setup's toolgate.
import { test, expect } from '@playwright/test';
import { logTail } from '../servers.mjs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: the global setup did not run`);
  return v;
};
const base = () => env('E2E_BASE_URL');

// Names chosen not to collide with the other specs.
const GROUP = 'sp-readers';
const SP = 'nightly-ci';
const CLIENT = 'Support assistant';

/** The admin API with the CLI-made admin token. */
async function api(method, urlPath, body, expectStatus) {
  const res = await fetch(`${base()}/api/v1${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${env('E2E_ADMIN_TOKEN')}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  expect(res.status, `${method} ${urlPath} ${JSON.stringify(body)} -> ${text}`).toBe(expectStatus);
  return text ? JSON.parse(text) : null;
}

/** The client credentials grant at the token endpoint: the HTTP status and the JSON body. */
async function clientCredentials(clientId, secret) {
  const res = await fetch(`${base()}/oauth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret }),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** Every audit event as exported (JSON Lines), to look for leaked secrets. */
async function auditExport() {
  const res = await fetch(`${base()}/api/v1/audit/export?format=jsonl`, {
    headers: { Authorization: `Bearer ${env('E2E_ADMIN_TOKEN')}` },
  });
  expect(res.status).toBe(200);
  return res.text();
}

/** Signs the admin in and waits until the page is hydrated. */
async function signIn(page) {
  await page.goto(`${base()}/login`);
  await page.waitForLoadState('networkidle');
  await page.locator('input[name=username]').fill(env('E2E_ADMIN_USER'));
  await page.locator('input[name=password]').fill(env('E2E_ADMIN_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(`${base()}/`);
  await page.waitForLoadState('networkidle');
}

/** Opens a dashboard page and waits for hydration (event handlers attached). */
async function open(page, path) {
  await page.goto(`${base()}${path}`);
  await page.waitForLoadState('networkidle');
}

const browserErrors = [];
const secrets = [];

test.describe.configure({ mode: 'serial' });

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => browserErrors.push(`${page.url()}: ${e}`));
  // A panic in the wasm says what happened on the console before it aborts.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) browserErrors.push(`${page.url()}: console: ${m.text()}`); });
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus) {
    const file = process.env.E2E_TOOLGATE_LOG;
    if (file) {
      const tail = logTail(file);
      await testInfo.attach('toolgate.log', { body: tail, contentType: 'text/plain' });
      console.log(`----- tail of toolgate log (${file}) -----\n${tail}`);
    }
  }
});

test.afterAll(async () => {
  // No secret shown in these tests was written to the audit log.
  const log = await auditExport();
  expect(log.length).toBeGreaterThan(0);
  for (const s of secrets) expect(log.includes(s), `secret ${s.slice(0, 8)}… in the audit log`).toBe(false);
  expect(browserErrors, 'uncaught errors in the page').toEqual([]);
});

test('a service principal is created with a group, used, and rotated', async ({ page }) => {
  const group = await api('POST', '/groups', { display_name: GROUP }, 201);
  await signIn(page);
  await page.getByRole('link', { name: 'Service principals', exact: true }).click();
  await expect(page).toHaveURL(`${base()}/service-principals`);
  await page.waitForLoadState('networkidle');

  const form = page.locator('#create-sp');
  await form.locator('input[name=name]').fill(SP);
  await form.locator('input[name=owner]').fill('jane.doe@example.com');
  await form.locator('textarea[name=description]').fill('Builds the nightly report');
  await form.getByLabel(GROUP, { exact: true }).check();
  await form.getByRole('button', { name: 'Create service principal' }).click();

  // The secret is shown once, with the client id; the list has the principal with its group.
  const secret = (await page.locator('#new-sp-secret').textContent()).trim();
  const clientId = (await page.locator('#new-sp-client-id').textContent()).trim();
  expect(secret).toMatch(/^tgk_/);
  secrets.push(secret);
  const row = page.locator(`#sp-table tr[data-sp="${SP}"]`);
  await expect(row.locator('td.groups')).toHaveText(GROUP);
  await expect(row.locator('td.status')).toHaveText('active');
  const listed = await api('GET', `/service-principals/${clientId}`, undefined, 200);
  expect(listed.groups).toEqual([group.id]);

  // The secret works at the token endpoint.
  const first = await clientCredentials(clientId, secret);
  expect(first.status, JSON.stringify(first.body)).toBe(200);
  expect(first.body.access_token).toBeTruthy();

  // A reload shows the list without the secret: it was shown once.
  await page.reload();
  // Hydrated again before anything is clicked (a click before hydration is a plain form post).
  await page.waitForLoadState('networkidle');
  await expect(page.locator(`#sp-table tr[data-sp="${SP}"]`)).toBeVisible();
  await expect(page.locator('#new-sp-secret')).toHaveCount(0);
  await expect(page.locator('body')).not.toContainText(secret);

  // Rotate without overlap: a new secret, the old one stops at once.
  await page.locator(`#sp-table tr[data-sp="${SP}"] a`).click();
  await expect(page).toHaveURL(`${base()}/service-principals/${clientId}`);
  await page.waitForLoadState('networkidle');
  await expect(page.locator('#sp-client-id')).toHaveText(clientId);
  await expect(page.locator('#sp-groups')).toHaveText(GROUP);
  await expect(page.locator('#sp-secrets tbody tr')).toHaveCount(1);
  await page.locator('#sp-rotate select[name=overlap_hours]').selectOption('0');
  await page.locator('#sp-rotate').getByRole('button', { name: 'Rotate' }).click();
  const rotated = (await page.locator('#new-sp-secret').textContent()).trim();
  expect(rotated).toMatch(/^tgk_/);
  expect(rotated).not.toBe(secret);
  secrets.push(rotated);
  await expect(page.locator('#sp-secrets tbody tr')).toHaveCount(2);
  await expect(page.locator('#sp-secrets tbody tr td.status')).toHaveText(['active', 'expired']);
  expect((await clientCredentials(clientId, rotated)).status).toBe(200);
  expect((await clientCredentials(clientId, secret)).status).toBe(401);

  // Its activity lists the tokens it was issued and the refused one.
  await expect(async () => {
    await page.reload();
    await expect(page.locator('#sp-activity td.kind')).toContainText(['oauth.token_issued']);
    await expect(page.locator('#sp-activity tr.decision-deny td.kind').first()).toHaveText('oauth.client_credentials_refused');
  }).toPass({ timeout: 15_000 });
  await page.waitForLoadState('networkidle');

  // Disabled, it gets no token.
  await page.locator('#sp-toggle').click();
  await expect(page.locator('#sp-status')).toHaveText('disabled');
  await expect(page.locator('#sp-toggle')).toHaveText('Enable');
  expect((await clientCredentials(clientId, rotated)).status).toBe(401);

  // Deleted, it is gone from the list (the page goes back to it).
  await page.locator('#sp-delete').click();
  await expect(page).toHaveURL(`${base()}/service-principals`);
  await expect(page.locator(`#sp-table tr[data-sp="${SP}"]`)).toHaveCount(0);
  await api('GET', `/service-principals/${clientId}`, undefined, 404);
});

test('a confidential client is registered and disabled', async ({ page }) => {
  await signIn(page);
  await page.getByRole('link', { name: 'OAuth clients', exact: true }).click();
  await expect(page).toHaveURL(`${base()}/oauth-clients`);

  const form = page.locator('#register-client');
  await form.locator('input[name=name]').fill(CLIENT);
  await form.locator('textarea[name=redirect_uris]').fill('https://assistant.example.com/oauth/callback\nhttp://127.0.0.1:33418/callback');
  await form.locator('input[name=confidential]').check();
  await form.getByRole('button', { name: 'Register client' }).click();
  const secret = (await page.locator('#new-client-secret').textContent()).trim();
  const clientId = (await page.locator('#new-client-id').textContent()).trim();
  expect(secret.length).toBeGreaterThan(20);
  secrets.push(secret);

  const row = page.locator(`#oauth-clients-table tr[data-client="${CLIENT}"]`);
  await expect(row.locator('td.kind')).toHaveText('pre-registered');
  await expect(row.locator('td.client-id')).toHaveText(clientId);
  await expect(row.locator('td.redirects code')).toHaveText([
    'https://assistant.example.com/oauth/callback', 'http://127.0.0.1:33418/callback',
  ]);
  await expect(row.locator('td.status')).toHaveText('enabled');

  await row.getByRole('button', { name: 'Disable' }).click();
  await expect(row.locator('td.status')).toHaveText('disabled');
  await expect(row.getByRole('button', { name: 'Enable' })).toBeVisible();
  const clients = await api('GET', '/oauth/clients', undefined, 200);
  const stored = clients.find((c) => c.id === clientId);
  expect(stored.disabled).toBe(true);
  expect(stored.confidential).toBe(true);

  // An invalid redirect URI is refused with a reason.
  await form.locator('input[name=name]').fill('Plain http');
  await form.locator('textarea[name=redirect_uris]').fill('http://assistant.example.com/cb');
  await form.locator('input[name=confidential]').uncheck();
  await form.getByRole('button', { name: 'Register client' }).click();
  await expect(page.locator('#register-client-section').getByRole('alert')).toBeVisible();
  expect((await api('GET', '/oauth/clients', undefined, 200)).some((c) => c.name === 'Plain http')).toBe(false);

  // The registration switches are saved.
  const settings = page.locator('#oauth-settings');
  await settings.locator('input[name=dcr_enabled]').uncheck();
  await settings.getByRole('button', { name: 'Save' }).click();
  await expect.poll(async () => (await api('GET', '/settings/oauth', undefined, 200)).dcr_enabled).toBe(false);
  await open(page, '/oauth-clients');
  await expect(page.locator('#oauth-settings input[name=dcr_enabled]')).not.toBeChecked();
  await page.locator('#oauth-settings input[name=dcr_enabled]').check();
  await page.locator('#oauth-settings').getByRole('button', { name: 'Save' }).click();
  await expect.poll(async () => (await api('GET', '/settings/oauth', undefined, 200)).dcr_enabled).toBe(true);
});

test('the Entra app-only setting needs a tenant GUID', async ({ page }) => {
  await signIn(page);
  await open(page, '/service-principals');
  const form = page.locator('#entra-apps-form');
  await form.locator('input[name=enabled]').check();
  await form.locator('input[name=tenant_id]').fill('contoso.onmicrosoft.com');
  await form.locator('input[name=audiences]').fill('api://toolgate');
  await form.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('alert')).toContainText('GUID');
  expect((await api('GET', '/settings/entra-apps', undefined, 200)).enabled).toBe(false);

  await form.locator('input[name=tenant_id]').fill('72f988bf-86f1-41af-91ab-2d7cd011db47');
  await form.locator('input[name=audiences]').fill('api://toolgate, 0b1c2d3e-0000-4000-8000-000000000001');
  await form.getByRole('button', { name: 'Save' }).click();
  await expect.poll(async () => (await api('GET', '/settings/entra-apps', undefined, 200)).audiences)
    .toEqual(['api://toolgate', '0b1c2d3e-0000-4000-8000-000000000001']);
  // Switched off again, so no other test depends on Entra.
  await open(page, '/service-principals');
  await page.locator('#entra-apps-form input[name=enabled]').uncheck();
  await page.locator('#entra-apps-form').getByRole('button', { name: 'Save' }).click();
  await expect.poll(async () => (await api('GET', '/settings/entra-apps', undefined, 200)).enabled).toBe(false);
});

test('the Connect page shows the MCP URL for every client, with copy buttons', async ({ page, context }) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base() });
  await signIn(page);
  await page.getByRole('link', { name: 'Connect your agent', exact: true }).click();
  await expect(page).toHaveURL(`${base()}/connect`);
  const mcp = `${base()}/mcp`;
  await expect(page.locator('#mcp-url')).toHaveText(mcp);
  await expect(page.locator('#snippet-claude')).toHaveText(`claude mcp add --transport http toolgate ${mcp}`);
  const vscode = JSON.parse(await page.locator('#snippet-vscode').textContent());
  expect(vscode).toEqual({ servers: { toolgate: { type: 'http', url: mcp } } });
  const cursor = JSON.parse(await page.locator('#snippet-cursor').textContent());
  expect(cursor).toEqual({ mcpServers: { toolgate: { url: mcp } } });
  await expect(page.locator('#snippet-generic')).toContainText(mcp);
  await expect(page.locator('#snippet-generic')).toContainText(`${base()}/.well-known/oauth-protected-resource/mcp`);

  // Copy puts the snippet on the clipboard.
  const snippet = page.locator('#snippet-cursor').locator('..');
  await snippet.getByRole('button', { name: 'Copy' }).click();
  await expect(snippet.getByRole('button')).toHaveText('Copied');
  expect(await page.evaluate(() => navigator.clipboard.readText()))
    .toBe(await page.locator('#snippet-cursor').textContent());

  // The local admin has no agents of their own.
  await expect(page.locator('#agents-local-note')).toBeVisible();
  await expect(page.locator('#token-form')).toHaveCount(0);
});
