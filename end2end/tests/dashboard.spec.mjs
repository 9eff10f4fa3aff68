// The dashboard in a real browser: sign-in, hydration, adding a connector through the form, and
// the audit page showing calls an agent made through the gateway.
import { test, expect } from '@playwright/test';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { McpHttpClient } from '../mcp-http.mjs';
import { logTail } from '../servers.mjs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: the global setup did not run`);
  return v;
};
const base = () => env('E2E_BASE_URL');
const here = path.dirname(fileURLToPath(import.meta.url));
const screenshotPath = path.join(here, '..', 'test-results', 'audit-page.png');

/** The admin API with the CLI-made admin token. */
async function api(method, urlPath, body, expectStatus) {
  const res = await fetch(`${base()}${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${env('E2E_ADMIN_TOKEN')}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  expect(res.status, `${method} ${urlPath} ${JSON.stringify(body)} -> ${text}`).toBe(expectStatus);
  return text ? JSON.parse(text) : null;
}

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus) {
    for (const [name, file] of [['toolgate', process.env.E2E_TOOLGATE_LOG], ['server-everything', process.env.E2E_UPSTREAM_LOG]]) {
      if (!file) continue;
      const tail = logTail(file);
      await testInfo.attach(`${name}.log`, { body: tail, contentType: 'text/plain' });
      console.log(`----- tail of ${name} log (${file}) -----\n${tail}`);
    }
  }
});

test('an unauthenticated visit to / ends at the login page', async ({ page }) => {
  await page.goto(`${base()}/`);
  await expect(page).toHaveURL(`${base()}/login`);
  await expect(page.locator('input[name=username]')).toBeVisible();
  await expect(page.locator('input[name=password]')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Sign in' })).toBeVisible();
});

test('sign in, add a connector, and see allowed and denied calls in the audit', async ({ page }) => {
  const connector = 'everything';
  const browserErrors = [];
  page.on('pageerror', (e) => browserErrors.push(String(e)));
  // Full page loads. Once hydrated, nav links route in the browser and forms post with fetch, so
  // none should happen while navigating and adding the connector.
  const documents = [];
  page.on('request', (r) => { if (r.resourceType() === 'document') documents.push(`${r.method()} ${r.url()}`); });

  // Sign in through the form; the page must hydrate (the wasm served as application/wasm).
  const wasm = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('.wasm'));
  await page.goto(`${base()}/login`);
  const wasmResponse = await wasm;
  expect(new URL(wasmResponse.url()).pathname).toBe('/pkg/toolgate.wasm');
  expect(wasmResponse.status()).toBe(200);
  expect(wasmResponse.headers()['content-type']).toBe('application/wasm');
  await page.waitForLoadState('networkidle');

  await page.locator('input[name=username]').fill(env('E2E_ADMIN_USER'));
  await page.locator('input[name=password]').fill(env('E2E_ADMIN_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(`${base()}/`);
  for (const name of ['Overview', 'Connectors', 'Groups & policies', 'Audit']) {
    await expect(page.getByRole('link', { name, exact: true })).toBeVisible();
  }

  // Add a connector through the wizard (name, then URL and headers, then create).
  const loadsBefore = documents.length;
  await page.getByRole('link', { name: 'Connectors', exact: true }).click();
  await expect(page).toHaveURL(`${base()}/connectors`);
  const form = page.locator('#add-connector');
  await form.locator('input[name=name]').fill(connector);
  await form.getByRole('button', { name: 'Next' }).click();
  await form.locator('input[name=url]').fill(env('E2E_UPSTREAM_URL'));
  await form.locator('textarea[name=headers]').fill('X-Test: 1');
  await form.getByRole('button', { name: 'Next' }).click();
  await form.getByRole('button', { name: 'Create connector' }).click();
  await expect(page.locator('#connectors-table td.name', { hasText: connector })).toHaveCount(1);
  await expect(page.locator('#connectors-table')).toContainText('X-Test');
  await expect(page.locator('#connectors-table')).not.toContainText('X-Test: 1');
  expect(documents.slice(loadsBefore), 'client-side navigation and form posts after hydration').toEqual([]);

  // Through the admin API: a user allowed `echo` on that connector, with a personal token.
  const list = await api('GET', '/api/v1/connectors', undefined, 200);
  const items = Array.isArray(list) ? list : list.items;
  const created = items.find((c) => c.name === connector);
  expect(created, JSON.stringify(list)).toBeTruthy();
  const user = await api('POST', '/api/v1/users', { user_name: 'e2e-agent', display_name: 'E2E Agent' }, 201);
  const group = await api('POST', '/api/v1/groups', { display_name: 'e2e-echoers' }, 201);
  await api('PUT', `/api/v1/groups/${group.id}/members/${user.id}`, undefined, 204);
  await api('PUT', `/api/v1/groups/${group.id}/policies/${created.id}`, { allow: ['echo'], block: [] }, 200);
  const { token } = await api('POST', `/api/v1/users/${user.id}/tokens`, { name: 'e2e' }, 201);

  // An agent: one allowed call and one refused call through the gateway.
  const mcp = new McpHttpClient(`${base()}/mcp`, token);
  await mcp.initialize();
  const allowed = await mcp.callTool(`${connector}__echo`, { message: 'from the browser test' });
  expect(allowed.error, JSON.stringify(allowed)).toBeUndefined();
  expect(allowed.result.content).toEqual([{ type: 'text', text: 'Echo: from the browser test' }]);
  const denied = await mcp.callTool(`${connector}__get-env`, {});
  expect(denied.result, JSON.stringify(denied)).toBeUndefined();
  expect(denied.error.message).toContain(`${connector}__get-env`);
  expect(denied.error.message).toContain('not permitted');
  await mcp.close();

  // The audit page shows both.
  await page.getByRole('link', { name: 'Audit', exact: true }).click();
  await expect(page).toHaveURL(`${base()}/audit`);
  const rows = page.locator('#audit-table tbody tr');
  const allowRow = rows.filter({ has: page.locator('td.tool', { hasText: /^echo$/ }) });
  const denyRow = rows.filter({ has: page.locator('td.tool', { hasText: /^get-env$/ }) });
  await expect(allowRow).toHaveCount(1);
  await expect(denyRow).toHaveCount(1);
  await expect(allowRow.locator('td.decision')).toHaveText('allow');
  await expect(denyRow.locator('td.decision')).toHaveText('deny');
  await expect(allowRow).toContainText('e2e-agent');
  await expect(denyRow).toContainText('e2e-agent');

  // A full page load of /audit (server-rendered) shows them too.
  await page.reload();
  await expect(page.locator('#audit-table td.tool', { hasText: /^get-env$/ })).toHaveCount(1);
  await page.waitForLoadState('networkidle');
  await page.screenshot({ path: screenshotPath, fullPage: true });
  await test.info().attach('audit-page', { path: screenshotPath, contentType: 'image/png' });

  expect(browserErrors, 'uncaught errors in the page').toEqual([]);
});

test('search the audit, expand an event, export it, and see the integrity status and charts', async ({ page }) => {
  const browserErrors = [];
  page.on('pageerror', (e) => browserErrors.push(String(e)));
  await page.goto(`${base()}/login`);
  await page.waitForLoadState('networkidle');
  await page.locator('input[name=username]').fill(env('E2E_ADMIN_USER'));
  await page.locator('input[name=password]').fill(env('E2E_ADMIN_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(`${base()}/`);

  // The Overview charts are drawn from the log: the two calls of the previous test.
  await expect(page.locator('#calls-chart g')).toHaveCount(60);
  await expect(page.locator('#hour-totals')).toHaveText('2 calls, 1 denied');
  await expect(page.locator('#top-tools')).toContainText('everything__echo');
  await expect(page.locator('#top-users')).toContainText('e2e-agent');

  // A search from the form: the subject's denied calls only.
  await page.goto(`${base()}/audit`);
  await page.waitForLoadState('networkidle');
  const form = page.locator('#audit-search');
  await form.locator('input[name=subject]').fill('e2e-agent');
  await form.locator('select[name=decision]').selectOption('deny');
  await form.locator('#audit-search-go').click();
  await expect(page).toHaveURL(/subject=e2e-agent/);
  await expect(page).toHaveURL(/decision=deny/);
  const rows = page.locator('#audit-table tbody tr');
  await expect(rows).toHaveCount(1);
  await expect(rows.first().locator('td.tool')).toHaveText('get-env');

  // Free text finds the allowed call by its arguments; the row expands to the full event.
  await page.goto(`${base()}/audit?q=browser`);
  await expect(rows).toHaveCount(1);
  await expect(rows.first().locator('td.tool')).toHaveText('echo');
  await rows.first().locator('details.event summary').click();
  const full = rows.first().locator('details.event pre');
  await expect(full).toBeVisible();
  await expect(full).toContainText('"args_hash"');
  await expect(full).toContainText('"outcome": "ok"');

  // The integrity banner reports a verified chain (checks run every second in this test).
  await expect(async () => {
    await page.reload();
    await expect(page.locator('#audit-integrity')).toHaveClass(/ok/, { timeout: 1000 });
  }).toPass({ timeout: 15000 });

  await expect(page.locator('#audit-policy')).toContainText('Fail closed');
  await expect(page.locator('#audit-policy')).toContainText('every 1 s');

  // Export of the current search, with the dashboard session; the export itself is audited.
  await page.goto(`${base()}/audit?subject=e2e-agent`);
  const href = await page.locator('#export-csv').getAttribute('href');
  expect(href).toContain('format=csv');
  expect(href).toContain('subject=e2e-agent');
  const csv = await page.request.get(`${base()}${href}`);
  expect(csv.status()).toBe(200);
  expect(csv.headers()['content-type']).toContain('text/csv');
  const text = await csv.text();
  expect(text.split('\n')[0]).toContain('id,at,kind,principal');
  expect(text).toContain('get-env');
  expect(text).toContain('echo');
  const { items } = await api('GET', '/api/v1/audit?kind=audit.export', undefined, 200);
  expect(items.length).toBeGreaterThan(0);
  expect(items[0].principal).toBe(env('E2E_ADMIN_USER'));

  // The DLP settings are on the Settings page.
  await page.goto(`${base()}/settings`);
  await expect(page.locator('#dlp-form')).toBeVisible();
  expect(browserErrors, 'uncaught errors in the page').toEqual([]);
});

test('an admin streams the audit log to a webhook SIEM sink from Settings', async ({ page }) => {
  // A webhook receiver standing in for the SIEM: it collects the JSON Lines it is sent.
  const http = await import('node:http');
  const received = [];
  const auth = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      auth.push(req.headers['x-siem-key']);
      for (const line of body.split('\n')) if (line.trim()) received.push(JSON.parse(line));
      res.writeHead(200).end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/ingest`;
  try {
    await page.goto(`${base()}/login`);
    await page.waitForLoadState('networkidle');
    await page.locator('input[name=username]').fill(env('E2E_ADMIN_USER'));
    await page.locator('input[name=password]').fill(env('E2E_ADMIN_PASSWORD'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page).toHaveURL(`${base()}/`);
    await page.goto(`${base()}/settings`);
    await page.waitForLoadState('networkidle');

    const form = page.locator('#siem-add');
    await form.locator('input[name=name]').fill('e2e-webhook');
    await form.locator('select[name=kind]').selectOption('webhook');
    await form.locator('input[name=url]').fill(url);
    await form.locator('input[name=header_name]').fill('X-Siem-Key');
    await form.locator('input[name=secret]').fill('siem-secret-value');
    await form.getByRole('button', { name: 'Add sink' }).click();
    const row = page.locator('#siem-table tr[data-sink="e2e-webhook"]');
    await expect(row).toHaveCount(1);
    await expect(page.locator('#siem-table')).not.toContainText('siem-secret-value');

    // The whole retained log arrives (the earlier tests' calls among it), with the secret header.
    await expect.poll(() => received.filter((e) => e.kind === 'tool_call').length, { timeout: 15000 }).toBeGreaterThanOrEqual(2);
    expect(auth.every((a) => a === 'siem-secret-value')).toBe(true);
    const ids = received.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));

    // "Send test event" reaches the receiver and says so.
    await row.locator('button.siem-test').click();
    await expect(page.locator('#siem-test-result')).toHaveAttribute('data-ok', 'true');
    await expect.poll(() => received.some((e) => e.kind === 'siem.test'), { timeout: 10000 }).toBe(true);

    // Delivery figures show in the table after a reload.
    await expect(async () => {
      await page.reload();
      await expect(row.locator('td.delivered')).not.toHaveText('0', { timeout: 1000 });
    }).toPass({ timeout: 15000 });
  } finally {
    server.close();
  }
});
