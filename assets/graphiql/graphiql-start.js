// Starts GraphiQL against this server's /graphql, with a first query that explains how to log in.
(function () {
  "use strict";
  var defaultQuery = [
    "# Welcome to appkeys.",
    "#",
    "# 1. Log in (the server printed the bootstrap account, email and password at first start):",
    "#",
    "#      mutation { login(input: {account: \"main\", email: \"admin@example.com\", password: \"…\"}) { token expiresAt } }",
    "#",
    "# 2. Open the \"Headers\" tab below and paste, with the token you got:",
    "#",
    "#      { \"Authorization\": \"Bearer aks_…\" }",
    "#",
    "#    An application key authenticates with two headers instead:",
    "#      { \"X-API-AppKey\": \"appkey-main-ABCDEF\", \"X-API-AppToken\": \"akt_…\" }",
    "#    (X-VTEX-API-AppKey / X-VTEX-API-AppToken are accepted too; add \"X-Account\": \"other\"",
    "#    to act on another account that granted the key roles.)",
    "#",
    "# 3. Ask who you are (below). Subscriptions work here too, over /graphql/ws with the same",
    "#    headers:  subscription { appKeyEvents { type key actor at } }",
    "#",
    "",
    "query Viewer {",
    "  viewer {",
    "    type",
    "    account",
    "    user { email }",
    "    appKey",
    "    resources { id name }",
    "  }",
    "}",
    ""
  ].join("\n");
  var subscriptionUrl = new URL("/graphql/ws", window.location.origin);
  subscriptionUrl.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      // The Headers tab goes with every request, and into the WebSocket's connection_init payload.
      fetcher: GraphiQL.createFetcher({
        url: new URL("/graphql", window.location.origin).toString(),
        subscriptionUrl: subscriptionUrl.toString()
      }),
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: true
    })
  );
})();
