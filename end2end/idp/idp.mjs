// A TEST OpenID Provider for end-to-end tests: a stand-in for Microsoft Entra ID built on
// oidc-provider (https://github.com/panva/node-oidc-provider). Never use it for anything real.
//
// Environment:
//   IDP_PORT           port to listen on, on 127.0.0.1 (0 = pick a free one; the READY line says which)
//   IDP_CLIENT_ID      the one (confidential) client
//   IDP_CLIENT_SECRET  its secret (client_secret_basic or client_secret_post)
//   IDP_REDIRECT_URI   its redirect URI (several may be given, separated by spaces or commas)
//   IDP_ACCOUNTS       JSON array: [{"login":"alice","password":"pw-alice","claims":{"tid":..,"oid":..,
//                      "preferred_username":..,"email":..,"name":..,"groups":[..]}}, ...]
//                      "sub" is claims.sub, else claims.oid, else the login. Every claim given is put in
//                      the ID token. "_claim_names" (Entra's groups overage) is passed through; if no
//                      "_claim_sources" is given, an Entra-like one is made up for it.
//   IDP_DEBUG=1        log every request to stderr
//
// Issuer: http://127.0.0.1:<port>; discovery at /.well-known/openid-configuration.
// Login page: GET /interaction/<uid> (form fields "login" and "password", button "Sign in"; a wrong
// password shows "Invalid credentials"; button "Cancel" returns error=access_denied to the client).
// Consent is granted automatically. PKCE (S256) is required. The session cookie gives SSO: a second
// /auth in the same browser goes straight back with a code unless prompt=login (or select_account).
// Prints "IDP READY http://127.0.0.1:<port>" once listening; exits 0 on SIGTERM.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider, { errors, interactionPolicy } from 'oidc-provider';

function fail(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(2);
}

function requireEnv(name) {
  const v = process.env[name];
  if (v === undefined || v === '') fail(`${name} is required`);
  return v;
}

// ---- configuration ----------------------------------------------------------------------------

const portEnv = requireEnv('IDP_PORT');
if (!/^\d+$/.test(portEnv) || Number(portEnv) > 65535) fail(`IDP_PORT is not a port: ${portEnv}`);
const clientId = requireEnv('IDP_CLIENT_ID');
const clientSecret = requireEnv('IDP_CLIENT_SECRET');
const redirectUris = requireEnv('IDP_REDIRECT_URI').split(/[\s,]+/).filter(Boolean);
const debug = process.env.IDP_DEBUG === '1';

let accountsIn;
try {
  accountsIn = JSON.parse(requireEnv('IDP_ACCOUNTS'));
} catch (e) {
  fail(`IDP_ACCOUNTS is not JSON: ${e.message}`);
}
if (!Array.isArray(accountsIn) || accountsIn.length === 0) fail('IDP_ACCOUNTS must be a non-empty JSON array');

// Claims that the provider sets itself and that an account may not override.
const RESERVED = new Set([
  'iss', 'aud', 'exp', 'iat', 'nbf', 'jti', 'nonce', 'azp', 'at_hash', 'c_hash', 's_hash',
  'sid', 'auth_time', 'acr', 'amr', 'sub', '_claim_names', '_claim_sources',
]);

const accountsByLogin = new Map();
const accountsBySub = new Map();
const customClaims = new Set(['tid', 'oid', 'groups', 'roles', 'preferred_username', 'email', 'name']);

for (const [i, a] of accountsIn.entries()) {
  if (!a || typeof a.login !== 'string' || typeof a.password !== 'string') {
    fail(`IDP_ACCOUNTS[${i}] needs string "login" and "password"`);
  }
  const claims = { ...(a.claims || {}) };
  const sub = String(claims.sub ?? claims.oid ?? a.login);
  delete claims.sub;
  if (claims._claim_names && !claims._claim_sources) {
    // Entra's groups overage: "_claim_names":{"groups":"src1"},"_claim_sources":{"src1":{"endpoint":..}}
    claims._claim_sources = {};
    for (const src of new Set(Object.values(claims._claim_names))) {
      claims._claim_sources[src] = {
        endpoint: `https://graph.windows.net/${claims.tid ?? 'tenant'}/users/${claims.oid ?? sub}/getMemberObjects`,
      };
    }
  }
  for (const k of Object.keys(claims)) {
    if (!RESERVED.has(k)) customClaims.add(k);
    else if (!k.startsWith('_claim_')) fail(`IDP_ACCOUNTS[${i}]: claim "${k}" is set by the provider`);
  }
  // Claims listed in _claim_names must be known claim names so the provider passes them through.
  for (const k of Object.keys(claims._claim_names || {})) customClaims.add(k);
  const account = { login: a.login, password: a.password, sub, claims };
  if (accountsByLogin.has(a.login)) fail(`IDP_ACCOUNTS: duplicate login ${a.login}`);
  accountsByLogin.set(a.login, account);
  accountsBySub.set(sub, account);
}

// ---- keys ------------------------------------------------------------------------------------

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `idp-${crypto.randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

// ---- html ------------------------------------------------------------------------------------

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body{font-family:sans-serif;background:#f3f2f1;margin:0;padding:40px}
main{max-width:360px;margin:0 auto;background:#fff;padding:24px 32px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
label{display:block;margin:12px 0 4px}
input{width:100%;box-sizing:border-box;padding:6px;font-size:15px}
button{margin-top:16px;padding:8px 20px;font-size:15px}
.error{color:#a80000}
.muted{color:#666;font-size:13px}
</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function loginPage(uid, { error, login, clientName } = {}) {
  const action = `/interaction/${encodeURIComponent(uid)}`;
  return page('Sign in - Test IdP', `<h1>Sign in</h1>
<p class="muted">Test identity provider${clientName ? ` for ${esc(clientName)}` : ''}</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${action}/login" autocomplete="off">
<label for="login">Username</label>
<input id="login" name="login" type="text" value="${esc(login || '')}" autofocus required>
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>
<form method="post" action="${action}/abort">
<button type="submit" class="muted">Cancel</button>
</form>`);
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(html));
  res.end(html);
}

// ---- provider --------------------------------------------------------------------------------

async function findAccount(_ctx, sub) {
  const account = accountsBySub.get(sub);
  if (!account) return undefined;
  return {
    accountId: sub,
    async claims() {
      return { sub, ...structuredClone(account.claims) };
    },
  };
}

// Entra clients may send prompt=select_account: accepted, and answered with the sign-in form.
function interactionPolicyWithSelectAccount() {
  const policy = interactionPolicy.base();
  policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }), 0);
  return policy;
}

function makeProvider(issuer) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      client_name: 'Toolgate (test)',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // client_secret_post is accepted too: oidc-provider takes either for a client_secret_* client.
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    jwks: { keys: [signingJwk] },
    cookies: {
      keys: [crypto.randomBytes(32).toString('base64url')],
      // Plain http on 127.0.0.1: never "secure" (oidc-provider only adds it when the request is https).
      long: { httpOnly: true, sameSite: 'lax', secure: false },
      short: { httpOnly: true, sameSite: 'lax', secure: false },
    },
    // Everything an account carries goes into the ID token (with conformIdTokenClaims false the
    // claims of the granted scopes are put in the ID token, not only in userinfo).
    conformIdTokenClaims: false,
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    claims: {
      openid: ['sub', ...customClaims],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      sid: null,
      auth_time: null,
    },
    findAccount,
    pkce: { required: () => true },
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
      userinfo: { enabled: true },
    },
    interactions: {
      policy: interactionPolicyWithSelectAccount(),
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256'],
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 3600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
      RefreshToken: 24 * 3600,
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error - Test IdP', `<h1>Error</h1>${Object.entries(out)
        .map(([k, v]) => `<p><strong>${esc(k)}</strong>: ${esc(v)}</p>`).join('')}`);
    },
  });
  provider.proxy = false;
  for (const ev of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
    'end_session.error', 'jwks.error', 'discovery.error']) {
    provider.on(ev, (_ctx, err) => {
      const detail = err?.error_description || err?.error_detail;
      process.stderr.write(`idp: ${ev}: ${err?.name}: ${err?.message}${detail ? ` (${detail})` : ''}\n`);
    });
  }
  return provider;
}

// ---- interactions ----------------------------------------------------------------------------

function readForm(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 64 * 1024) {
        reject(new Error('form too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

/** A Grant giving everything the interaction asks for (consent is automatic here). */
async function autoGrant(provider, details, accountId, { fresh }) {
  let grant;
  if (!fresh && details.grantId) grant = await provider.Grant.find(details.grantId);
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  }
  const scope = String(details.params.scope || 'openid');
  grant.addOIDCScope(scope);
  const pd = details.prompt?.details || {};
  if (pd.missingOIDCScope) grant.addOIDCScope(pd.missingOIDCScope.join(' '));
  if (pd.missingOIDCClaims) grant.addOIDCClaims(pd.missingOIDCClaims);
  if (details.params.claims) {
    try {
      const c = JSON.parse(details.params.claims);
      grant.addOIDCClaims([...Object.keys(c.id_token || {}), ...Object.keys(c.userinfo || {})]);
    } catch { /* the provider has validated it already */ }
  }
  if (pd.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(pd.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return grant.save();
}

async function handleInteraction(provider, req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?\/?$/);
  if (!m) return sendHtml(res, 404, page('Not found', '<h1>Not found</h1>'));
  const uid = decodeURIComponent(m[1]);
  const action = m[2];

  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (e) {
    return sendHtml(res, 400, page('Error - Test IdP',
      `<h1>Error</h1><p class="error">Sign-in session not found or expired (${esc(e.message)}). Start over from the application.</p>`));
  }
  if (details.uid !== uid) {
    return sendHtml(res, 400, page('Error - Test IdP',
      '<h1>Error</h1><p class="error">This sign-in page does not belong to the current sign-in session. Start over from the application.</p>'));
  }
  const client = await provider.Client.find(details.params.client_id);
  const clientName = client?.clientName;

  if (req.method === 'GET' && !action) {
    if (details.prompt.name === 'consent' && details.session?.accountId) {
      // Already signed in; only consent is missing: grant it without asking.
      const grantId = await autoGrant(provider, details, details.session.accountId, { fresh: false });
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    return sendHtml(res, 200, loginPage(uid, { clientName, login: details.params.login_hint }));
  }

  if (req.method === 'POST' && action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }

  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const login = form.get('login') || '';
    const password = form.get('password') || '';
    const account = accountsByLogin.get(login);
    const ok = account && crypto.timingSafeEqual(
      crypto.createHash('sha256').update(password).digest(),
      crypto.createHash('sha256').update(account.password).digest(),
    );
    if (!ok) {
      return sendHtml(res, 200, loginPage(uid, { clientName, login, error: 'Invalid credentials' }));
    }
    const grantId = await autoGrant(provider, details, account.sub, { fresh: true });
    return provider.interactionFinished(req, res, {
      select_account: {},
      login: { accountId: account.sub, amr: ['pwd'] },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  }

  res.setHeader('Allow', 'GET, POST');
  return sendHtml(res, 405, page('Method not allowed', '<h1>Method not allowed</h1>'));
}

// ---- server ----------------------------------------------------------------------------------

let provider = null;
let providerCallback = null;

const server = http.createServer((req, res) => {
  if (debug) {
    const t0 = Date.now();
    res.on('finish', () => process.stderr.write(
      `idp: ${req.method} ${req.url} -> ${res.statusCode}${res.getHeader('location') ? ` ${res.getHeader('location')}` : ''} (${Date.now() - t0}ms)\n`,
    ));
  }
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/interaction' || url.pathname.startsWith('/interaction/')) {
    handleInteraction(provider, req, res, url).catch((e) => {
      process.stderr.write(`idp: interaction error: ${e.stack || e}\n`);
      if (!res.headersSent) {
        const msg = e instanceof errors.OIDCProviderError ? `${e.error}: ${e.error_description}` : 'internal error';
        sendHtml(res, 500, page('Error - Test IdP', `<h1>Error</h1><p class="error">${esc(msg)}</p>`));
      } else {
        res.destroy();
      }
    });
    return;
  }
  providerCallback(req, res);
});

server.on('error', (e) => fail(`cannot listen on 127.0.0.1:${portEnv}: ${e.message}`));
server.listen(Number(portEnv), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  provider = makeProvider(issuer);
  providerCallback = provider.callback();
  process.stdout.write(`IDP READY ${issuer}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
