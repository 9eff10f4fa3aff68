// Global setup: a fresh temp folder, server-everything and toolgate on free ports, a dashboard
// admin and an admin API token made by toolgate's own CLI. What the tests need is passed to them
// in environment variables (E2E_*); the returned function is the global teardown.
import { mkdtempSync, rmSync, existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  everythingEntry, freePort, portOpen, startProcess, toolgateBin, toolgateCli, waitUntil,
} from './servers.mjs';

export const ADMIN_USER = 'admin';
export const ADMIN_PASSWORD = 'e2e-correct-horse-battery';

export default async function globalSetup() {
  if (!existsSync(everythingEntry)) throw new Error(`${everythingEntry} is missing: run scripts/test-deps.sh`);
  if (!existsSync(toolgateBin)) throw new Error(`${toolgateBin} is missing: build it first (cargo leptos build)`);
  const sitePkg = path.join(path.dirname(toolgateBin), '..', 'site', 'pkg');
  if (!existsSync(sitePkg) || !readdirSync(sitePkg).some((f) => f.endsWith('.wasm'))) {
    throw new Error(`${sitePkg} has no .wasm: build the dashboard first (cargo leptos build)`);
  }

  const dir = mkdtempSync(path.join(os.tmpdir(), 'toolgate-e2e-'));
  const started = [];
  const teardown = async () => {
    for (const p of started.reverse()) await p.stop();
    if (process.env.KEEP_TEST_DIR === '1') console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };

  try {
    // The upstream MCP server (never on its default port 3001).
    const upstreamPort = await freePort();
    const upstream = startProcess('server-everything', [process.execPath, everythingEntry, 'streamableHttp'], {
      env: { ...process.env, PORT: String(upstreamPort) }, cwd: dir, logFile: path.join(dir, 'server-everything.log'),
    });
    started.push(upstream);
    await waitUntil('server-everything', upstream, () => portOpen(upstreamPort));

    // Toolgate: migrate, a dashboard admin, an admin API token, then serve.
    const port = await freePort();
    const data = path.join(dir, 'data');
    const env = {
      ...process.env,
      TOOLGATE_LISTEN: `127.0.0.1:${port}`,
      TOOLGATE_DATABASE_URL: `sqlite://${data}/tg.db`,
      TOOLGATE_DATA_DIR: data,
      // Integrity checks every second, so the Audit page shows a verified chain during the test.
      TOOLGATE_AUDIT_CHECKPOINT_SECS: "1",
      // Every test signs in from 127.0.0.1 within a few minutes: more than the default
      // per-address sign-in budget. The limit itself is tested in the Rust suite.
      TOOLGATE_RATE_LIMIT_SIGNIN_PER_MIN: "100000",
      TOOLGATE_RATE_LIMIT_OAUTH_PER_MIN: "100000",
      RUST_LOG: process.env.RUST_LOG || 'info',
    };
    await toolgateCli(['migrate'], { env, cwd: dir });
    await toolgateCli(['admin', 'create', '--username', ADMIN_USER], {
      env: { ...env, TOOLGATE_ADMIN_PASSWORD: ADMIN_PASSWORD }, cwd: dir,
    });
    const out = await toolgateCli(['token', 'create', '--name', 'e2e', '--role', 'admin'], { env, cwd: dir });
    const adminToken = out.trim().split('\n').pop().trim();

    const toolgate = startProcess('toolgate', [toolgateBin, 'serve'], {
      env, cwd: dir, logFile: path.join(dir, 'toolgate.log'),
    });
    started.push(toolgate);
    const base = `http://127.0.0.1:${port}`;
    await waitUntil('toolgate', toolgate, async () => (await fetch(`${base}/readyz`)).status === 200);

    Object.assign(process.env, {
      E2E_BASE_URL: base,
      E2E_ADMIN_TOKEN: adminToken,
      E2E_ADMIN_USER: ADMIN_USER,
      E2E_ADMIN_PASSWORD: ADMIN_PASSWORD,
      E2E_UPSTREAM_URL: `http://127.0.0.1:${upstreamPort}/mcp`,
      E2E_TOOLGATE_LOG: toolgate.logFile,
      E2E_UPSTREAM_LOG: upstream.logFile,
    });
  } catch (e) {
    await teardown();
    throw e;
  }
  return teardown;
}
