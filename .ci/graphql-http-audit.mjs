// The graphql-http server audit (the GraphQL-over-HTTP specification's compliance checks) against a
// running appkeys. Usage: node .ci/graphql-http-audit.mjs http://127.0.0.1:PORT/graphql
// Needs the graphql-http and graphql packages (NODE_PATH, or installed beside it).
import { auditServer } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node graphql-http-audit.mjs URL");
  process.exit(2);
}
const results = await auditServer({ url });
// "notice" marks a MAY of the specification; warnings (SHOULD) and errors (MUST) fail the audit.
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const result of results) {
  counts[result.status] = (counts[result.status] ?? 0) + 1;
  if (result.status !== "ok") {
    console.log(`${result.status.toUpperCase()} ${result.id} ${result.name}: ${result.reason}`);
  }
}
console.log(
  `graphql-http audit: ${counts.ok} ok, ${counts.notice} notices, ${counts.warn} warnings, ${counts.error} errors`,
);
process.exit(counts.warn === 0 && counts.error === 0 ? 0 : 1);
