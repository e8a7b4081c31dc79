// Apollo Client with its persisted-queries link (automatic persisted queries) against appkeys.
//   node persisted.mjs <graphql url> <bearer token>
// Runs the same query twice through two clients (no shared cache) and prints one JSON line:
// what each HTTP request carried ({"query": bool, "hash": bool}) and the data of each run.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries/index.js';
import { createHash } from 'node:crypto';

const [uri, token] = process.argv.slice(2);
const sent = [];
const recordingFetch = async (url, options) => {
  const body = JSON.parse(options.body);
  sent.push({ query: typeof body.query === 'string', hash: Boolean(body.extensions?.persistedQuery?.sha256Hash) });
  return fetch(url, options);
};
const sha256 = (text) => createHash('sha256').update(text).digest('hex');
const client = () =>
  new ApolloClient({
    cache: new InMemoryCache(),
    link: createPersistedQueryLink({ sha256 }).concat(
      new HttpLink({ uri, fetch: recordingFetch, headers: { authorization: `Bearer ${token}` } }),
    ),
  });

const VIEWER = gql`query Who { viewer { account user { email } } }`;
const first = await client().query({ query: VIEWER, fetchPolicy: 'network-only' });
const firstSent = sent.splice(0);
const second = await client().query({ query: VIEWER, fetchPolicy: 'network-only' });
process.stdout.write(JSON.stringify({ first: { sent: firstSent, data: first.data }, second: { sent, data: second.data } }) + '\n');
