// The reference graphql-ws client (npm: graphql-ws) against appkeys' /graphql/ws.
//   node subscriptions.mjs <ws url> <connection params as JSON>
// Prints one JSON line per happening: {"connected":true}, {"next":…} for each event, and
// {"closed":code,"reason":…} when the socket closes; exits after the first event or the close.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, params] = process.argv.slice(2);
const say = (value) => process.stdout.write(JSON.stringify(value) + '\n');

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: JSON.parse(params),
  retryAttempts: 0,
  on: {
    connected: () => say({ connected: true }),
    closed: (event) => {
      say({ closed: event.code, reason: event.reason });
      process.exit(0);
    },
  },
});

try {
  const events = client.iterate({ query: 'subscription { appKeyEvents { type key actor } }' });
  for await (const result of events) {
    say({ next: result });
    break;
  }
  await client.dispose();
  process.exit(0);
} catch (error) {
  // A refused connection_init ends the iteration with the close event (already printed).
  say({ error: String(error?.code ?? error?.message ?? error) });
  process.exit(0);
}
