// Self-test of the test IdP (idp.mjs): starts it on a free port and runs the authorization-code +
// PKCE flow without a browser (fetch with manual redirects and a tiny cookie jar).
// Run: node end2end/idp/selftest.mjs   -> prints "selftest ok" (exit 0) or fails (exit 1).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

const CLIENT_ID = 'toolgate-e2e';
const CLIENT_SECRET = 'e2e-client-secret-0123456789';
const REDIRECT_URI = 'http://127.0.0.1:1/auth/oidc/callback'; // never fetched
const TID = '11111111-1111-1111-1111-111111111111';
const GROUP = '33333333-3333-3333-3333-333333333333';
const ALICE = {
  login: 'alice',
  password: 'pw-alice',
  claims: {
    tid: TID,
    oid: 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
    preferred_username: 'alice@contoso.com',
    email: 'alice@contoso.com',
    name: 'Alice',
    groups: [GROUP],
  },
};
const BOB = {
  login: 'bob',
  password: 'pw-bob',
  claims: {
    tid: TID,
    oid: 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
    preferred_username: 'bob@contoso.com',
    email: 'bob@contoso.com',
    name: 'Bob',
    _claim_names: { groups: 'src1' },
  },
};

// ---- start the IdP ---------------------------------------------------------------------------

function startIdp() {
  const child = spawn(process.execPath, [path.join(here, 'idp.mjs')], {
    env: {
      ...process.env,
      IDP_PORT: '0',
      IDP_CLIENT_ID: CLIENT_ID,
      IDP_CLIENT_SECRET: CLIENT_SECRET,
      IDP_REDIRECT_URI: REDIRECT_URI,
      IDP_ACCOUNTS: JSON.stringify([ALICE, BOB]),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`IdP not ready in 15s; stderr:\n${stderr}`)), 15_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/^IDP READY (http:\/\/127\.0\.0\.1:(\d+))$/m);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`IdP exited (${code ?? signal}) before ready; stderr:\n${stderr}`));
    });
  });
  return { child, ready, exited, stderr: () => stderr };
}

// ---- http with a tiny cookie jar ---------------------------------------------------------------

class Jar {
  cookies = new Map(); // name|path -> { name, value, path }

  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let cpath = '/';
      let expired = false;
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const key = k.toLowerCase();
        if (key === 'path') cpath = v || '/';
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
        if (key === 'secure') throw new Error(`cookie ${name} is Secure: would not be sent over http`);
      }
      const id = `${name}|${cpath}`;
      if (expired) this.cookies.delete(id);
      else this.cookies.set(id, { name, value, path: cpath });
    }
  }

  header(url) {
    const p = new URL(url).pathname;
    const match = [...this.cookies.values()].filter((c) => p === c.path
      || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`));
    return match.map((c) => `${c.name}=${c.value}`).join('; ');
  }
}

async function request(jar, url, init = {}) {
  const headers = { ...(init.headers || {}) };
  const cookie = jar.header(url);
  if (cookie) headers.cookie = cookie;
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.store(res);
  return res;
}

/** Follows redirects on the IdP (GET) until a non-redirect or a Location outside `base`. */
async function follow(jar, base, res, url) {
  for (let i = 0; i < 10; i += 1) {
    if (![301, 302, 303, 307, 308].includes(res.status)) return { res, url };
    const next = new URL(res.headers.get('location'), url).href;
    if (!next.startsWith(`${base}/`)) return { res, url, location: next };
    await res.arrayBuffer();
    url = next;
    res = await request(jar, url);
  }
  throw new Error('too many redirects');
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const decodePart = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));

// ---- the flow --------------------------------------------------------------------------------

async function signIn(base, account, { authMethod, extra = {} }) {
  const jar = new Jar();
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  const state = b64url(crypto.randomBytes(12));
  const nonce = b64url(crypto.randomBytes(12));
  const auth = new URL(`${base}/auth`);
  auth.search = new URLSearchParams({
    client_id: CLIENT_ID,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile email',
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  }).toString();

  let { res, url } = await follow(jar, base, await request(jar, auth.href), auth.href);
  assert.equal(res.status, 200, `login page status (${url})`);
  assert.match(url, /\/interaction\/[^/]+$/, 'ended on the interaction page');
  let html = await res.text();
  assert.match(html, /<input[^>]*name="login"/);
  assert.match(html, /<input[^>]*name="password"[^>]*type="password"|<input[^>]*type="password"[^>]*name="password"/);
  assert.match(html, /<button[^>]*>Sign in<\/button>/);
  const action = new URL(html.match(/<form method="post" action="([^"]+\/login)"/)[1], url).href;

  // Wrong password: the form again, with the error.
  res = await request(jar, action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ login: account.login, password: 'wrong' }).toString(),
  });
  assert.equal(res.status, 200, 'wrong password status');
  html = await res.text();
  assert.match(html, /Invalid credentials/);
  assert.match(html, /name="login"/);

  // Right password: redirected back to the client with code and state.
  res = await request(jar, action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ login: account.login, password: account.password }).toString(),
  });
  const end = await follow(jar, base, res, action);
  assert.ok(end.location, `expected a redirect to the client, got ${end.res.status} at ${end.url}: ${(await end.res.text()).slice(0, 500)}`);
  const back = new URL(end.location);
  assert.equal(`${back.origin}${back.pathname}`, REDIRECT_URI);
  assert.equal(back.searchParams.get('error'), null, `error: ${back.searchParams.get('error_description')}`);
  assert.equal(back.searchParams.get('state'), state);
  assert.equal(back.searchParams.get('iss'), base, 'RFC 9207 iss in the response');
  const code = back.searchParams.get('code');
  assert.ok(code, 'code');

  // Token request.
  const form = new URLSearchParams({
    grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier,
  });
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (authMethod === 'basic') {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64')}`;
  } else {
    form.set('client_id', CLIENT_ID);
    form.set('client_secret', CLIENT_SECRET);
  }
  res = await fetch(`${base}/token`, { method: 'POST', headers, body: form.toString() });
  const tokens = await res.json();
  assert.equal(res.status, 200, `token endpoint: ${JSON.stringify(tokens)}`);
  assert.equal(tokens.token_type, 'Bearer');
  assert.ok(tokens.access_token);
  assert.ok(tokens.id_token);

  // Userinfo works with the access token.
  res = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(res.status, 200, 'userinfo');
  const userinfo = await res.json();
  assert.equal(userinfo.sub, account.claims.oid);

  // The same code twice: refused (and oidc-provider revokes what the code gave).
  res = await fetch(`${base}/token`, { method: 'POST', headers, body: form.toString() });
  assert.equal(res.status, 400, 'code reuse refused');

  return { idToken: tokens.id_token, nonce, userinfo };
}

async function verifyIdToken(base, jwt, jwks) {
  const [h, p, s] = jwt.split('.');
  const header = decodePart(h);
  const payload = decodePart(p);
  assert.equal(header.alg, 'RS256');
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} in JWKS`);
  assert.equal(jwk.kty, 'RSA');
  assert.equal(jwk.d, undefined, 'JWKS must not leak the private key');
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const ok = crypto.verify('RSA-SHA256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'));
  assert.ok(ok, 'id_token signature verifies against the JWKS');
  // Tampered payload must not verify.
  const bad = crypto.verify('RSA-SHA256', Buffer.from(`${h}.${p}x`), key, Buffer.from(s, 'base64url'));
  assert.ok(!bad);
  assert.equal(payload.iss, base);
  assert.equal(payload.aud, CLIENT_ID);
  const now = Math.floor(Date.now() / 1000);
  assert.ok(payload.exp > now && payload.iat <= now + 5);
  return { header, payload };
}

async function main() {
  const idp = startIdp();
  let base;
  try {
    base = await idp.ready;

    // Discovery and JWKS.
    let res = await fetch(`${base}/.well-known/openid-configuration`);
    assert.equal(res.status, 200);
    const disc = await res.json();
    assert.equal(disc.issuer, base);
    assert.deepEqual(disc.code_challenge_methods_supported, ['S256']);
    assert.equal(disc.authorization_endpoint, `${base}/auth`);
    assert.equal(disc.token_endpoint, `${base}/token`);
    assert.equal(disc.jwks_uri, `${base}/jwks`);
    assert.ok(disc.id_token_signing_alg_values_supported.includes('RS256'));
    assert.ok(disc.token_endpoint_auth_methods_supported.includes('client_secret_basic'));
    assert.ok(disc.token_endpoint_auth_methods_supported.includes('client_secret_post'));
    assert.ok(disc.response_types_supported.includes('code'));
    for (const c of ['tid', 'oid', 'groups', 'preferred_username', 'email', 'name']) {
      assert.ok(disc.claims_supported.includes(c), `claims_supported has ${c}`);
    }
    res = await fetch(disc.jwks_uri);
    assert.equal(res.status, 200);
    const jwks = await res.json();
    assert.ok(jwks.keys.some((k) => k.kty === 'RSA' && k.alg === 'RS256'));

    // Without PKCE: refused (error redirect to the client).
    {
      const u = new URL(`${base}/auth`);
      u.search = new URLSearchParams({
        client_id: CLIENT_ID, response_type: 'code', redirect_uri: REDIRECT_URI, scope: 'openid', state: 's',
      }).toString();
      res = await fetch(u, { redirect: 'manual' });
      assert.equal(res.status, 303);
      const loc = new URL(res.headers.get('location'));
      assert.equal(loc.searchParams.get('error'), 'invalid_request', 'PKCE required');
    }

    // Alice: groups in the token; client_secret_basic.
    {
      const { idToken, nonce, userinfo } = await signIn(base, ALICE, { authMethod: 'basic' });
      const { payload } = await verifyIdToken(base, idToken, jwks);
      assert.equal(payload.nonce, nonce);
      assert.equal(payload.sub, ALICE.claims.oid);
      assert.equal(payload.oid, ALICE.claims.oid);
      assert.equal(payload.tid, TID);
      assert.deepEqual(payload.groups, [GROUP]);
      assert.equal(payload._claim_names, undefined);
      assert.equal(payload.preferred_username, 'alice@contoso.com');
      assert.equal(payload.email, 'alice@contoso.com');
      assert.equal(payload.name, 'Alice');
      console.log('alice id_token payload:', JSON.stringify(payload));
      assert.equal(userinfo.tid, TID);
    }

    // Bob: groups overage (_claim_names, no groups); client_secret_post; prompt=select_account.
    {
      const { idToken, nonce } = await signIn(base, BOB, { authMethod: 'post', extra: { prompt: 'select_account' } });
      const { header, payload } = await verifyIdToken(base, idToken, jwks);
      assert.equal(payload.nonce, nonce);
      assert.equal(payload.sub, BOB.claims.oid);
      assert.equal(payload.oid, BOB.claims.oid);
      assert.equal(payload.tid, TID);
      assert.equal(payload.groups, undefined);
      assert.deepEqual(payload._claim_names, { groups: 'src1' });
      assert.ok(payload._claim_sources?.src1?.endpoint, '_claim_sources.src1.endpoint');
      assert.equal(payload.preferred_username, 'bob@contoso.com');
      console.log('bob id_token header:', JSON.stringify(header));
      console.log('bob id_token payload:', JSON.stringify(payload));
    }

    // Clean exit on SIGTERM.
    idp.child.kill('SIGTERM');
    const { code, signal } = await Promise.race([
      idp.exited, new Promise((r) => setTimeout(r, 5000, { code: 'timeout' })),
    ]);
    assert.equal(code, 0, `exit on SIGTERM: ${code ?? signal}`);
    if (process.env.SELFTEST_SHOW_STDERR === '1') console.log(idp.stderr());
    console.log('selftest ok');
  } catch (e) {
    console.error(`selftest FAILED: ${e.stack || e}`);
    console.error(`--- IdP stderr ---\n${idp.stderr()}`);
    idp.child.kill('SIGKILL');
    process.exit(1);
  }
}

main();
