// Connectors, the tool catalog, policies and the simulator in a real browser: the add wizard
// (test connection with suggested risks, create with discovery; streamable HTTP, SSE and stdio
// with a secret environment), a connector's catalog (risk
// override, refresh, review of new and changed tools), the review queue, the policy matrix with
// its live preview, and the simulator's answers after saving. Runs against the global setup's
// toolgate and server-everything, plus a small upstream in this process whose tools change.
import { test, expect } from '@playwright/test';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  everythingEntry, freePort, logTail, portOpen, startProcess, startToyMcp, waitUntil,
} from '../servers.mjs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: the global setup did not run`);
  return v;
};
const base = () => env('E2E_BASE_URL');

// Names chosen not to collide with the other specs (they look for "everything", "e2e-*").
const HUB = 'hub';
const TOY = 'toy-wiki';
const SECRET = 'wizard-secret-value-1';

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

/** Signs the admin in and waits until the page is hydrated. */
async function signIn(page) {
  await page.goto(`${base()}/login`);
  await page.waitForLoadState('networkidle');
  await page.locator('input[name=username]').fill(env('E2E_ADMIN_USER'));
  await page.locator('input[name=password]').fill(env('E2E_ADMIN_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(`${base()}/`);
}

/** Opens a dashboard page and waits for hydration (event handlers attached). */
async function open(page, path) {
  await page.goto(`${base()}${path}`);
  await page.waitForLoadState('networkidle');
}

const tool = (name, description, annotations) => ({
  name, description, inputSchema: { type: 'object', properties: {} }, annotations,
});

let toy;
const browserErrors = [];

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  toy = await startToyMcp([
    tool('search_pages', 'Searches the wiki.', { readOnlyHint: true }),
    tool('delete_page', 'Deletes a wiki page.', {}),
  ]);
});

test.afterAll(async () => {
  await toy?.close();
});

const consoleErrors = [];

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => browserErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus) {
    if (consoleErrors.length) console.log(`----- browser console errors -----\n${consoleErrors.join('\n')}`);
    for (const [name, file] of [['toolgate', process.env.E2E_TOOLGATE_LOG], ['server-everything', process.env.E2E_UPSTREAM_LOG]]) {
      if (!file) continue;
      const tail = logTail(file);
      await testInfo.attach(`${name}.log`, { body: tail, contentType: 'text/plain' });
      console.log(`----- tail of ${name} log (${file}) -----\n${tail}`);
    }
  }
  expect(browserErrors, 'uncaught errors in the page').toEqual([]);
});

test('the add wizard tests the connection, suggests risks, and creates a healthy connector with its tools', async ({ page }) => {
  await signIn(page);
  await open(page, '/connectors');
  const wizard = page.locator('#add-connector');

  // Step 1: transport and name; a bad name is refused before going on.
  await expect(wizard.locator('input[name=transport][value=streamable_http]')).toBeChecked();
  await wizard.locator('input[name=name]').fill('Not Valid');
  await page.locator('#wizard-next').click();
  await expect(page.locator('#wizard-problem')).toContainText('may contain only');
  await wizard.locator('input[name=name]').fill(HUB);
  await page.locator('#wizard-next').click();

  // Step 2: where, credentials, and a test connection that lists the tools with suggested risk.
  await wizard.locator('input[name=url]').fill(env('E2E_UPSTREAM_URL'));
  await wizard.locator('textarea[name=headers]').fill(`X-Api-Key: ${SECRET}`);
  await page.locator('#test-connection').click();
  const probed = page.locator('#probe-tools tbody tr');
  await expect(page.locator('#probe-ok')).toContainText('tools found');
  const found = await probed.count();
  expect(found).toBeGreaterThan(5);
  const echo = page.locator('#probe-tools tr[data-tool="echo"]');
  await expect(echo.locator('td.risk')).toHaveText('Low');
  await expect(echo.locator('td.reason')).toHaveText('annotation readOnlyHint');
  const gzip = page.locator('#probe-tools tr[data-tool="gzip-file-as-resource"]');
  await expect(gzip.locator('td.risk')).toHaveText('Normal');
  await expect(gzip.locator('td.reason')).toHaveText('annotation openWorldHint');
  // Nothing was saved by the test.
  const before = await api('GET', '/connectors', undefined, 200);
  expect(before.map((c) => c.name)).not.toContain(HUB);

  // Step 3: the summary names the header, never its value; create.
  await page.locator('#wizard-next').click();
  await expect(page.locator('#wizard-summary')).toContainText('X-Api-Key');
  await expect(page.locator('#wizard-summary')).not.toContainText(SECRET);
  await page.locator('#create-connector').click();
  await expect(page.locator('#create-result')).toHaveAttribute('data-ok', 'true');
  await expect(page.locator('#create-result')).toContainText(`${found} tools discovered`);

  // Listed with its transport, credential names, tool count and health; the wizard forgot the secret.
  const row = page.locator(`#connectors-table tr[data-connector="${HUB}"]`);
  await expect(row.locator('td.transport')).toHaveText('Streamable HTTP');
  await expect(row.locator('td.endpoint')).toHaveText(env('E2E_UPSTREAM_URL'));
  await expect(row.locator('td.secrets')).toHaveText('X-Api-Key (values hidden)');
  await expect(row.locator('td.tools')).toHaveText(String(found));
  await expect(row.locator('td.to-review')).toHaveText('0');
  await expect(row.locator('td.status .health')).toHaveText('healthy');
  await expect(page.locator('#add-connector input[name=name]')).toHaveValue('');
  await page.reload();
  await expect(row.locator('td.status .health')).toHaveText('healthy');
  expect(await page.content()).not.toContain(SECRET);

  // The API agrees: one catalog of approved tools, health known.
  const status = await api('GET', `/connectors/${HUB}`, undefined, 200);
  expect(status.tools).toBe(found);
  expect(status.health.status).toBe('healthy');
  const tools = await api('GET', `/connectors/${HUB}/tools`, undefined, 200);
  expect(tools.every((t) => t.review === 'approved')).toBe(true);
});

test('the wizard approves only what its test showed: a tool that appears before Create waits for review', async ({ page }) => {
  const shifty = await startToyMcp([tool('list_notes', 'Lists notes.', { readOnlyHint: true })]);
  try {
    await signIn(page);
    await open(page, '/connectors');
    const wizard = page.locator('#add-connector');
    await wizard.locator('input[name=name]').fill('shifty');
    await page.locator('#wizard-next').click();
    await wizard.locator('input[name=url]').fill(shifty.url);
    await page.locator('#test-connection').click();
    await expect(page.locator('#probe-ok')).toContainText('1 tools found');
    // Between the admin's test and Create, the server starts offering more.
    shifty.tools = [
      tool('list_notes', 'Lists notes.', { readOnlyHint: true }),
      tool('export_all_notes', 'Sends every note somewhere.', {}),
    ];
    await page.locator('#wizard-next').click();
    await page.locator('#create-connector').click();
    await expect(page.locator('#create-result')).toHaveAttribute('data-ok', 'true');
    const tools = await api('GET', '/connectors/shifty/tools', undefined, 200);
    const review = Object.fromEntries(tools.map((t) => [t.name, t.review]));
    expect(review).toEqual({ list_notes: 'approved', export_all_notes: 'pending' });
    const row = page.locator('#connectors-table tr[data-connector="shifty"]');
    await expect(row.locator('td.to-review')).toHaveText('1');
    await api('DELETE', '/connectors/shifty', undefined, 204);
  } finally {
    await shifty.close();
  }
});

test('the wizard adds an SSE connector and a stdio command with its environment', async ({ page }) => {
  // server-everything once more, speaking the legacy HTTP+SSE transport.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'toolgate-e2e-sse-'));
  const port = await freePort();
  const sse = startProcess('server-everything-sse', [process.execPath, everythingEntry, 'sse'], {
    env: { ...process.env, PORT: String(port) }, cwd: dir, logFile: path.join(dir, 'sse.log'),
  });
  try {
    await waitUntil('server-everything (sse)', sse, () => portOpen(port));
    await signIn(page);
    await open(page, '/connectors');
    const wizard = page.locator('#add-connector');

    // SSE: the URL is the event stream's.
    await wizard.locator('input[name=transport][value=sse]').check();
    await wizard.locator('input[name=name]').fill('legacy-sse');
    await page.locator('#wizard-next').click();
    await expect(wizard.locator('input[name=command]')).toBeHidden();
    await wizard.locator('input[name=url]').fill(`http://127.0.0.1:${port}/sse`);
    await page.locator('#test-connection').click();
    await expect(page.locator('#probe-tools tr[data-tool="echo"]')).toHaveCount(1);
    await page.locator('#wizard-next').click();
    await page.locator('#create-connector').click();
    await expect(page.locator('#create-result')).toContainText('legacy-sse');
    await expect(page.locator('#create-result')).toHaveAttribute('data-ok', 'true');
    const sseRow = page.locator('#connectors-table tr[data-connector="legacy-sse"]');
    await expect(sseRow.locator('td.transport')).toHaveText('SSE');
    await expect(sseRow.locator('td.status .health')).toHaveText('healthy');
    expect(Number(await sseRow.locator('td.tools').textContent())).toBeGreaterThan(5);

    // stdio: a command, its arguments one per line, and an environment whose value stays secret.
    await wizard.locator('input[name=transport][value=stdio]').check();
    await wizard.locator('input[name=name]').fill('local-stdio');
    await page.locator('#wizard-next').click();
    await expect(wizard.locator('input[name=url]')).toBeHidden();
    await wizard.locator('input[name=command]').fill(process.execPath);
    await wizard.locator('textarea[name=args]').fill(`${everythingEntry}\nstdio`);
    await wizard.locator('textarea[name=env]').fill('E2E_STDIO_TOKEN=stdio-secret-value-1');
    await page.locator('#test-connection').click();
    await expect(page.locator('#probe-tools tr[data-tool="get-env"]')).toHaveCount(1);
    await page.locator('#wizard-next').click();
    await expect(page.locator('#wizard-summary')).toContainText('E2E_STDIO_TOKEN');
    await expect(page.locator('#wizard-summary')).not.toContainText('stdio-secret-value-1');
    await page.locator('#create-connector').click();
    await expect(page.locator('#create-result')).toContainText('local-stdio');
    await expect(page.locator('#create-result')).toHaveAttribute('data-ok', 'true');
    const stdioRow = page.locator('#connectors-table tr[data-connector="local-stdio"]');
    await expect(stdioRow.locator('td.transport')).toHaveText('stdio');
    await expect(stdioRow.locator('td.endpoint')).toHaveText(`${process.execPath} ${everythingEntry} stdio`);
    await expect(stdioRow.locator('td.secrets')).toHaveText('$E2E_STDIO_TOKEN (values hidden)');
    await expect(stdioRow.locator('td.status .health')).toHaveText('healthy');
    await page.reload();
    expect(await page.content()).not.toContain('stdio-secret-value-1');
    const created = await api('GET', '/connectors/local-stdio', undefined, 200);
    expect(created).toMatchObject({ transport: 'stdio', command: process.execPath, args: [everythingEntry, 'stdio'], env_names: ['E2E_STDIO_TOKEN'] });
  } finally {
    // The later specs see only their own connectors' processes.
    for (const name of ['legacy-sse', 'local-stdio']) {
      await fetch(`${base()}/api/v1/connectors/${name}`, {
        method: 'DELETE', headers: { Authorization: `Bearer ${env('E2E_ADMIN_TOKEN')}` },
      });
    }
    await sse.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a connector page changes a tool\'s risk, refreshes, and reviews new and changed tools', async ({ page }) => {
  const created = await api('POST', '/connectors', { name: TOY, url: toy.url }, 201);
  expect(created.discovery.ok, JSON.stringify(created.discovery)).toBe(true);
  await signIn(page);
  await open(page, `/connectors/${TOY}`);

  // The catalog with suggested risk levels and their reasons.
  const rowOf = (name) => page.locator(`#catalog-table tr[data-tool="${name}"]`);
  await expect(rowOf('delete_page').locator('td.risk .risk')).toHaveText('High');
  await expect(rowOf('delete_page').locator('.risk-reason')).toHaveText('name contains "delete"');
  await expect(rowOf('search_pages').locator('td.risk .risk')).toHaveText('Low');
  await expect(page.locator('#connector-settings .header-names')).toHaveText('none');

  // An admin's level persists across a reload; clearing it returns to the suggestion.
  await rowOf('search_pages').locator('select.risk-select').selectOption('consequential');
  await expect(rowOf('search_pages')).toHaveAttribute('data-risk', 'consequential');
  await page.reload();
  await expect(rowOf('search_pages').locator('td.risk .risk')).toHaveText('Consequential');
  await expect(rowOf('search_pages').locator('.risk-reason')).toHaveText('set by an admin');
  await expect(rowOf('search_pages').locator('select.risk-select')).toHaveValue('consequential');
  let tools = await api('GET', `/connectors/${TOY}/tools`, undefined, 200);
  expect(tools.find((t) => t.name === 'search_pages')).toMatchObject({ risk: 'consequential', risk_overridden: true });
  await page.waitForLoadState('networkidle');
  await rowOf('search_pages').locator('select.risk-select').selectOption('');
  await expect(rowOf('search_pages')).toHaveAttribute('data-risk', 'low');
  await expect(rowOf('search_pages').locator('.risk-reason')).toHaveText('annotation readOnlyHint');

  // The upstream adds a tool and changes another's description: a refresh says so, and both wait.
  toy.tools = [
    tool('search_pages', 'Searches the wiki, including drafts.', { readOnlyHint: true }),
    tool('delete_page', 'Deletes a wiki page.', {}),
    tool('publish_page', 'Publishes a draft.', {}),
  ];
  await page.locator('#refresh-tools').click();
  await expect(page.locator('#refresh-result')).toHaveText(
    'Added: publish_page; changed: search_pages. New tools wait for review.',
  );
  await expect(rowOf('publish_page')).toHaveAttribute('data-review', 'pending');
  await expect(rowOf('publish_page').locator('td.risk .risk')).toHaveText('Consequential');
  await expect(rowOf('search_pages')).toHaveAttribute('data-review', 'changed');
  await expect(rowOf('search_pages').locator('.changed-note')).toHaveText('definition changed since approval');
  await expect(rowOf('delete_page')).toHaveAttribute('data-review', 'approved');
  await expect(page.locator('#nav-review-count')).toHaveText('2');

  // Approve the new tool here; it stays approved after a reload.
  await rowOf('publish_page').getByRole('button', { name: 'Approve' }).click();
  await expect(rowOf('publish_page')).toHaveAttribute('data-review', 'approved');
  await expect(page.locator('#nav-review-count')).toHaveText('1');
  await page.reload();
  await expect(rowOf('publish_page')).toHaveAttribute('data-review', 'approved');
  tools = await api('GET', `/connectors/${TOY}/tools`, undefined, 200);
  expect(tools.find((t) => t.name === 'publish_page').review).toBe('approved');

  // The changed one is in the Connectors page's queue; reject it there.
  await open(page, '/connectors');
  const queued = page.locator('#review-queue tbody tr');
  await expect(queued).toHaveCount(1);
  await expect(queued.first()).toHaveAttribute('data-tool', 'search_pages');
  await expect(queued.first().locator('td.state')).toContainText('changed');
  await expect(page.locator(`#connectors-table tr[data-connector="${TOY}"] td.to-review`)).toHaveText('1');
  await queued.first().getByRole('button', { name: 'Reject' }).click();
  await expect(page.locator('#review-queue-empty')).toBeVisible();
  await expect(page.locator('#nav-review-count')).toHaveCount(0);
  await expect(page.locator(`#connectors-table tr[data-connector="${TOY}"] td.to-review`)).toHaveText('0');
  tools = await api('GET', `/connectors/${TOY}/tools`, undefined, 200);
  expect(tools.find((t) => t.name === 'search_pages').review).toBe('rejected');

  // The review changes are audited with the admin's name.
  const { items } = await api('GET', '/audit?kind=admin.catalog.review', undefined, 200);
  expect(items.length).toBeGreaterThanOrEqual(2);
  expect(items[0].principal).toBe(env('E2E_ADMIN_USER'));
});

test('the policy matrix previews rules as they are typed; the simulator then shows the saved decision', async ({ page }) => {
  const user = await api('POST', '/users', { user_name: 'sim-alice', display_name: 'Sim Alice' }, 201);
  const group = await api('POST', '/groups', { display_name: 'sim-readers' }, 201);
  await api('PUT', `/groups/${group.id}/members/${user.id}`, undefined, 204);
  /** What the live policy (through the API) says about a member of the group alone. */
  const groupMayCall = async (name) => {
    const who = await api('GET', `/policy/who-can-call?connector=${HUB}&tool=${name}`, undefined, 200);
    return who.groups.find((g) => g.name === 'sim-readers').allowed;
  };
  await signIn(page);
  await open(page, '/policies');

  // No rules yet: default deny. Open the cell's editor.
  const cell = page.locator(`#policy-matrix td.cell[data-group="sim-readers"][data-connector="${HUB}"]`);
  await expect(cell).toHaveText('—');
  await cell.locator('a').click();
  const editor = page.locator('#policy-editor');
  await expect(editor).toHaveAttribute('data-connector', HUB);
  const preview = (name) => page.locator(`#preview-table tr[data-tool="${name}"]`);
  await expect(preview('echo')).toHaveAttribute('data-allowed', 'false');
  await expect(preview('echo').locator('td.rule')).toContainText('default deny');

  // The preview follows what is typed, before anything is saved.
  await editor.locator('textarea[name=allow]').fill('echo, get-*');
  await expect(preview('echo')).toHaveAttribute('data-allowed', 'true');
  await expect(preview('get-sum')).toHaveAttribute('data-allowed', 'true');
  await expect(preview('get-sum').locator('td.rule')).toContainText('allowed by group "sim-readers" rule "get-*"');
  await editor.locator('textarea[name=block]').fill('get-sum');
  await expect(preview('get-sum')).toHaveAttribute('data-allowed', 'false');
  await expect(preview('get-sum').locator('td.rule')).toContainText('blocked by group "sim-readers" rule "get-sum"');
  await expect(preview('toggle-simulated-logging')).toHaveAttribute('data-allowed', 'false');
  await editor.locator('select[name=allow_risk]').selectOption('normal');
  await expect(preview('toggle-simulated-logging')).toHaveAttribute('data-allowed', 'true');
  await expect(preview('toggle-simulated-logging').locator('td.rule')).toContainText('risk <= Normal');
  await editor.locator('select[name=allow_risk]').selectOption('');
  await expect(preview('toggle-simulated-logging')).toHaveAttribute('data-allowed', 'false');
  // A pattern that cannot be saved is named at once.
  await editor.locator('textarea[name=block]').fill('get-sum, rm -rf!');
  await expect(page.locator('#preview-error')).toContainText('may contain only');
  await editor.locator('textarea[name=block]').fill('get-sum');
  await expect(preview('get-sum')).toHaveAttribute('data-allowed', 'false');
  expect(await groupMayCall('echo')).toBe(false);

  // Save: the matrix cell summarises the rules, and the store has them.
  await page.locator('#policy-save').click();
  await expect(page.locator('#policy-saved')).toBeVisible();
  await expect(cell).toHaveText('allow echo, get-*; block get-sum');
  expect(await groupMayCall('echo')).toBe(true);
  expect(await groupMayCall('get-sum')).toBe(false);
  const audited = await api('GET', '/audit?kind=admin.policy.put', undefined, 200);
  expect(audited.items[0].principal).toBe(env('E2E_ADMIN_USER'));

  // The simulator: sim-alice may call echo, not get-sum, each with the deciding rule.
  await open(page, '/simulator');
  await page.locator('#simulate-user select[name=user]').selectOption('sim-alice');
  await page.locator('#simulate-user button[type=submit]').click();
  await expect(page).toHaveURL(/user=sim-alice/);
  const sim = page.locator(`#simulation .sim-connector[data-connector="${HUB}"]`);
  await expect(page.locator('#simulation')).toHaveAttribute('data-subject', 'sim-alice');
  await expect(sim.locator('tr[data-tool="get-sum"]')).toHaveAttribute('data-allowed', 'false');
  await expect(sim.locator('tr[data-tool="get-sum"] td.rule')).toContainText('blocked by group "sim-readers" rule "get-sum"');
  await expect(sim.locator('tr[data-tool="echo"]')).toHaveAttribute('data-allowed', 'true');
  await expect(sim.locator('tr[data-tool="echo"] td.rule')).toContainText('allowed by group "sim-readers" rule "echo"');
  await expect(page.locator(`#simulation .sim-connector[data-connector="${TOY}"] tr[data-allowed="true"]`)).toHaveCount(0);

  // Who can call: sim-alice for echo, not for get-sum.
  const who = page.locator('#who-can-call');
  await who.locator('select[name=connector]').selectOption(HUB);
  await who.locator('select[name=tool]').selectOption('echo');
  await who.locator('button[type=submit]').click();
  await expect(page).toHaveURL(/tool=echo/);
  const alice = page.locator('#who-users tr[data-name="sim-alice"]');
  await expect(alice).toHaveAttribute('data-allowed', 'true');
  await expect(alice.locator('td.rule')).toContainText('sim-readers');
  await expect(page.locator('#who-groups tr[data-name="sim-readers"]')).toHaveAttribute('data-allowed', 'true');
  await who.locator('select[name=tool]').selectOption('get-sum');
  await who.locator('button[type=submit]').click();
  await expect(page).toHaveURL(/tool=get-sum/);
  await expect(alice).toHaveAttribute('data-allowed', 'false');
  await expect(alice.locator('td.rule')).toContainText('blocked by group "sim-readers" rule "get-sum"');

  // Removing the rules returns the cell to default deny.
  await open(page, `/policies?group=${group.id}&connector=${(await api('GET', `/connectors/${HUB}`, undefined, 200)).id}`);
  await page.locator('#policy-remove').click();
  await expect(cell).toHaveText('—');
  expect(await groupMayCall('echo')).toBe(false);
});

test('a connector is disabled and deleted from the list, after a confirmation', async ({ page }) => {
  await signIn(page);
  await open(page, '/connectors');
  const row = page.locator(`#connectors-table tr[data-connector="${TOY}"]`);
  await row.locator('button.connector-toggle').click();
  await expect(row.locator('td.status .health')).toHaveText('disabled');
  expect((await api('GET', `/connectors/${TOY}`, undefined, 200)).enabled).toBe(false);

  await row.locator('button.connector-delete').click();
  await expect(row.locator('.confirm')).toContainText(`Delete ${TOY}`);
  await row.locator('button.connector-delete-confirm').click();
  await expect(row).toHaveCount(0);
  const list = await api('GET', '/connectors', undefined, 200);
  expect(list.map((c) => c.name)).not.toContain(TOY);
  const { items } = await api('GET', '/audit?kind=admin.connector.delete', undefined, 200);
  expect(items[0].principal).toBe(env('E2E_ADMIN_USER'));
});
