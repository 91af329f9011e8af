// A real OpenID provider (the certified `oidc-provider` package) for Sluice's SSO tests
// (tests/it/sso.rs). It signs people in without a form: the interaction finishes at once as
// the account named by `login_hint` (default `alice`), as a test browser would after typing a
// password. Settings come from the environment:
//   PORT            port on 127.0.0.1 (the issuer is http://127.0.0.1:PORT)
//   REDIRECT_URI    Sluice's callback URL, the one registered redirect URI
//   CLIENT_SECRET   the client secret of client `sluice`
//   KID             the signing key's id (a new key per start: restart with another KID to rotate)
//   MODE            normal | wrong-key (publishes another key under the same kid)
//                   | no-email-verified (never says whether an email is verified)
// Prints `listening <issuer>` when ready.
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const mode = process.env.MODE || 'normal';
const kid = process.env.KID || 'key-1';

function rsaJwk(id) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: id, alg: 'RS256', use: 'sig' };
}
const signing = rsaJwk(kid);
// What wrong-key mode publishes instead: a different public key under the same kid.
const { d, p, q, dp, dq, qi, ...other } = rsaJwk(kid);
void d; void p; void q; void dp; void dq; void qi;

// People of this provider: email, whether it is verified, groups, and whether their
// sign-in used a second factor (amr).
const people = {
  alice: { email: 'alice@example.com', verified: true, groups: ['staff'] },
  bob: { email: 'bob@example.com', verified: true, groups: ['devs', 'staff'] },
  owner: { email: 'owner@example.com', verified: true, groups: [] },
  unverified: { email: 'unverified@example.com', verified: false, groups: [] },
  outsider: { email: 'outsider@elsewhere.example', verified: true, groups: [] },
  strong: { email: 'strong@example.com', verified: true, groups: [], amr: ['pwd', 'otp'] },
  weak: { email: 'weak@example.com', verified: true, groups: [] },
};

const configuration = {
  clients: [{
    client_id: 'sluice',
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    // `amr` (how the person signed in, from the login result) is released with the
    // profile scope: oidc-provider puts in ID tokens only the claims a scope releases.
    profile: ['name', 'amr'],
    groups: ['groups'],
  },
  // ID tokens carry the claims (Sluice reads the ID token, not userinfo).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    const person = people[id];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, email: person.email, name: id, groups: person.groups };
        if (mode !== 'no-email-verified') claims.email_verified = person.verified;
        return claims;
      },
    };
  },
};

const provider = new Provider(issuer, configuration);
const callback = provider.callback();

const server = http.createServer(async (req, res) => {
  try {
    if (mode === 'wrong-key' && req.url === '/jwks') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [other] }));
      return;
    }
    if (req.url.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      const accountId = details.params.login_hint || 'alice';
      const person = people[accountId];
      if (!person) {
        await provider.interactionFinished(req, res, { error: 'access_denied' }, { mergeWithLastSubmission: false });
        return;
      }
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups', 'amr']);
      const grantId = await grant.save();
      const login = { accountId };
      if (person.amr) login.amr = person.amr;
      await provider.interactionFinished(req, res, { login, consent: { grantId } }, { mergeWithLastSubmission: false });
      return;
    }
    callback(req, res);
  } catch (error) {
    res.statusCode = 500;
    res.end(String(error));
  }
});
server.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
