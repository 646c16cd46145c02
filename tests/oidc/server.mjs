// An independent OAuth 2.0 authorization server for tower-bearer's interop tests:
// panva/oidc-provider (see package.json for the pinned version), configured to issue RFC 9068
// JWT access tokens with the client_credentials grant, signed with RS256, PS256, ES256 or
// EdDSA depending on the requested resource (RFC 8707 `resource` parameter).
//
//   node tests/oidc/server.mjs [PORT] [--exit-on-stdin-close]
//
// PORT (argument or $PORT) defaults to 0: the OS picks a free port. Once listening, exactly one
// line goes to stdout, a JSON object: {"issuer":"http://127.0.0.1:PORT", ...}. Everything else
// (warnings, errors) goes to stderr.
//
// With --exit-on-stdin-close (or OIDC_EXIT_ON_STDIN_CLOSE=1) the server exits when its stdin
// reaches EOF, so a parent that dies without killing it does not leave it running.
//
// Environment:
//   PORT                  listening port (default 0)
//   ACCESS_TOKEN_TTL      access token lifetime in seconds (default 300)
//   CLIENT_SECRET         secret of the `rs-test` client (default `rs-test-secret`)
//   DEFAULT_RESOURCE      resource used when a token request names none
//                         (default https://rs.test/rs256)
//   SHORT_ACCESS_TOKEN_TTL  access token lifetime of the resource https://rs.test/short, in
//                         seconds (default 2)
//
// Clients:
//   rs-test / $CLIENT_SECRET              client_secret_basic; the client_credentials grant
//   rs-introspect / rs-introspect-secret  client_secret_basic; no grant: a resource server's
//                                         own credentials for the introspection endpoint
//   rs-flow                               public (native) client, PKCE; authorization_code and
//                                         refresh_token; redirect URI http://127.0.0.1/callback
//   rs-dpop / rs-dpop-secret              client_secret_basic; client_credentials; DPoP-bound
//                                         tokens only (RFC 9449: a DPoP proof to /token)
//   rs-mtls / rs-mtls-secret              client_secret_basic; client_credentials; tokens bound
//                                         to its client certificate (RFC 8705
//                                         tls_client_certificate_bound_access_tokens)
//
// Sender-constrained tokens: DPoP is on (`features.dPoP`), and so are certificate-bound tokens
// (`features.mTLS.certificateBoundAccessTokens`). There is no TLS here: the client certificate
// of a token request is read from the `X-Client-Cert` request header (DER, standard base64), as
// a TLS-terminating proxy would pass it. Test configuration only.
//
// The authorization code flow needs no browser: the interaction URL (/interaction/UID) is
// answered by this script itself, which signs in the fixed development user `alice` and grants
// everything requested (provider.interactionFinished). A client follows the redirects with its
// cookies: /auth → /interaction/UID (login) → /auth/UID → /interaction/UID2 (consent) →
// /auth/UID2 → redirect_uri?code=…. Ask for `openid offline_access items:read` with
// `prompt=consent` to get a refresh token.
//
// Endpoints (see the discovery document): /token, /jwks, /token/introspection (opaque tokens
// only: oidc-provider answers `unsupported_token_type` for its JWT access tokens) and
// /token/revocation (oidc-provider's default policy: only the client a token was issued to
// may revoke it).
//
// On Node 20 oidc-provider 9 warns "Unsupported runtime. Use Node.js v22.x LTS" on stderr; it
// works regardless.
//
// Resources (all with the single scope `items:read`):
//   https://rs.test/rs256   JWT access token, RS256
//   https://rs.test/ps256   JWT access token, PS256
//   https://rs.test/es256   JWT access token, ES256
//   https://rs.test/eddsa   JWT access token, EdDSA (Ed25519)
//   https://rs.test/ed25519 JWT access token, `alg: Ed25519` (RFC 9864 fully-specified name)
//   https://rs.test/opaque  opaque access token (use introspection)
//   https://rs.test/short   JWT access token, ES256, living $SHORT_ACCESS_TOKEN_TTL seconds
//
// Signing keys (RSA 2048, EC P-256, Ed25519) are generated at every start; the public halves
// are served at the `jwks_uri` of the discovery document.

import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

// stdout carries exactly one line (see above); oidc-provider's notices (console.info, e.g.
// when a revoked token is introspected) go to stderr with everything else.
console.info = console.error;
console.log = console.error;

const args = process.argv.slice(2);
const portArg = args.find((a) => !a.startsWith('--'));
const port = Number.parseInt(portArg ?? process.env.PORT ?? '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid port: ${portArg ?? process.env.PORT}`);
  process.exit(2);
}
const ttl = Number.parseInt(process.env.ACCESS_TOKEN_TTL ?? '300', 10);
if (!Number.isInteger(ttl) || ttl <= 0) {
  console.error(`invalid ACCESS_TOKEN_TTL: ${process.env.ACCESS_TOKEN_TTL}`);
  process.exit(2);
}
const shortTtl = Number.parseInt(process.env.SHORT_ACCESS_TOKEN_TTL ?? '2', 10);
if (!Number.isInteger(shortTtl) || shortTtl <= 0) {
  console.error(`invalid SHORT_ACCESS_TOKEN_TTL: ${process.env.SHORT_ACCESS_TOKEN_TTL}`);
  process.exit(2);
}
const clientSecret = process.env.CLIENT_SECRET || 'rs-test-secret';
const defaultResourceIndicator = process.env.DEFAULT_RESOURCE || 'https://rs.test/rs256';
const exitOnStdinClose = args.includes('--exit-on-stdin-close')
  || process.env.OIDC_EXIT_ON_STDIN_CLOSE === '1';

const SCOPE = 'items:read';
/** Resource indicator → how its access tokens are issued. */
const RESOURCES = {
  'https://rs.test/rs256': { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } },
  'https://rs.test/ps256': { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'PS256' } } },
  'https://rs.test/es256': { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } },
  'https://rs.test/eddsa': { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'EdDSA' } } },
  // RFC 9864's fully-specified name for EdDSA over Ed25519 (same key, header `alg: Ed25519`).
  'https://rs.test/ed25519': { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'Ed25519' } } },
  'https://rs.test/opaque': { accessTokenFormat: 'opaque' },
  'https://rs.test/short': {
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'ES256' } },
    accessTokenTTL: shortTtl,
  },
};
/** The development user every interaction signs in. */
const DEV_USER = 'alice';

function privateJwk(type, options, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid };
}

// No `alg` on the keys: the RSA key signs both RS256 and PS256.
const jwks = {
  keys: [
    privateJwk('rsa', { modulusLength: 2048 }, 'rsa-2048'),
    privateJwk('ec', { namedCurve: 'P-256' }, 'ec-p256'),
    privateJwk('ed25519', undefined, 'ed25519'),
  ],
};

// The issuer must be known before the provider exists, and with port 0 it is known only once
// the socket is bound: bind first, then hand requests to the provider.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'rs-test',
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'rs-flow',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    },
    {
      client_id: 'rs-dpop',
      client_secret: 'rs-dpop-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      dpop_bound_access_tokens: true,
    },
    {
      client_id: 'rs-mtls',
      client_secret: 'rs-mtls-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      tls_client_certificate_bound_access_tokens: true,
    },
    {
      client_id: 'rs-introspect',
      client_secret: 'rs-introspect-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks,
  interactions: {
    url(_ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        const der = ctx.get('x-client-cert');
        if (!der) return undefined;
        try {
          return new X509Certificate(Buffer.from(der, 'base64'));
        } catch {
          return undefined;
        }
      },
    },
    resourceIndicators: {
      enabled: true,
      // A token request without `resource` gets the default resource (and so a JWT).
      async defaultResource(_ctx, _client, oneOf) {
        if (oneOf) return oneOf;
        return defaultResourceIndicator;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(_ctx, resourceIndicator) {
        const server = RESOURCES[resourceIndicator];
        if (!server) throw new errors.InvalidTarget();
        return { scope: SCOPE, accessTokenTTL: ttl, ...server };
      },
    },
  },
  ttl: {
    // A resource's own lifetime (https://rs.test/short) wins over ACCESS_TOKEN_TTL.
    AccessToken(_ctx, token) {
      return token.resourceServer?.accessTokenTTL ?? ttl;
    },
    ClientCredentials: ttl,
  },
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));

// The interaction endpoint: signs in DEV_USER, then grants every requested scope, claim and
// resource scope. No HTML, no browser.
async function interaction(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params, session } = details;
    let result;
    if (prompt.name === 'login') {
      result = { login: { accountId: DEV_USER } };
    } else if (prompt.name === 'consent') {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
      if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    } else {
      result = { error: 'access_denied', error_description: `unexpected prompt ${prompt.name}` };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  } catch (err) {
    console.error('interaction error', err);
    res.statusCode = 400;
    res.end(`interaction failed: ${err.message}\n`);
  }
}

const callback = provider.callback();
handler = (req, res) => {
  if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
    interaction(req, res);
  } else {
    callback(req, res);
  }
};

process.stdout.write(`${JSON.stringify({
  issuer,
  client_id: 'rs-test',
  resources: Object.keys(RESOURCES),
  access_token_ttl: ttl,
})}\n`);

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (exitOnStdinClose) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
