// A real OpenID provider for the identity tests: panva's `oidc-provider`
// (OpenID Certified; installed, pinned, by tools/peers.sh) over HTTPS on
// 127.0.0.1, with the certificate and key the test made with its own CA.
//
// It publishes discovery (/.well-known/openid-configuration) and its JWKS,
// and issues JWT access tokens by the client credentials grant: the
// resource indicator names the gateway and the token's `aud` is
// --audience, its `sub` the client id. Its signing key is a new ES256 key
// with key id --kid at every start, so a restart with another kid is a
// key rotation that removes the old key.
//
// Usage:
//   node tools/oidc_provider.mjs --module DIR/node_modules/oidc-provider \
//     --port P --issuer https://127.0.0.1:P --cert cert.pem --key key.pem \
//     --kid k1 --audience sealgate --client ID --secret S [--groups a,b]
// Prints "listening on https://127.0.0.1:P" once it accepts connections.
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i];
  const value = process.argv[i + 1];
  if (!name.startsWith('--') || value === undefined) {
    console.error(`oidc_provider: expected --name value pairs, got ${name}`);
    process.exit(2);
  }
  args[name.slice(2)] = value;
}
for (const need of ['module', 'port', 'issuer', 'cert', 'key', 'kid', 'audience', 'client', 'secret']) {
  if (!args[need]) {
    console.error(`oidc_provider: --${need} is required`);
    process.exit(2);
  }
}

const { default: Provider } = await import(pathToFileURL(path.join(args.module, 'lib', 'index.js')).href);

const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: args.kid, alg: 'ES256', use: 'sig' };
const groups = args.groups ? args.groups.split(',') : [];
// The resource the client asks for (RFC 8707); the token's audience is
// --audience, as a gateway's config names it.
const resource = 'https://gateway.sealgate.test/mcp';

const provider = new Provider(args.issuer, {
  clients: [
    {
      client_id: args.client,
      client_secret: args.secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [signing] },
  scopes: ['mcp'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'mcp',
          audience: args.audience,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  extraTokenClaims: () => (groups.length ? { groups } : undefined),
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
});
provider.on('server_error', (_ctx, err) => console.error('oidc_provider: server error', err));

const server = https.createServer(
  { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) },
  provider.callback(),
);
server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`listening on https://127.0.0.1:${args.port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
