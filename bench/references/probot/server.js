// Probot as a reference of ghapp's benchmark (bench/probot.py installs it and starts this file):
// an app that reads the installation id of each push and does nothing else, served by Probot's
// own middleware on a bare node:http server, one Node process, as fast as Probot can go (no
// request logging; LOG_LEVEL=warn, NODE_ENV=production). Probot verifies X-Hub-Signature-256
// with WEBHOOK_SECRET and answers once the handler has run. createProbot reads APP_ID,
// PRIVATE_KEY, WEBHOOK_SECRET and LOG_LEVEL from the environment; PORT and HOST are ours.
import { createServer } from "node:http";
import { createNodeMiddleware, createProbot } from "probot";

export let installation = 0; // the last push's installation id: read, kept nowhere else

const app = (probot) => {
  probot.on("push", async (context) => {
    installation = context.payload.installation.id;
  });
};

const middleware = await createNodeMiddleware(app, { probot: createProbot() });
const server = createServer((request, response) => {
  middleware(request, response, () => {
    response.writeHead(404).end();
  });
});
const host = process.env.HOST || "127.0.0.1";
server.listen(Number(process.env.PORT), host, () => {
  console.log(`Probot app (Node ${process.version}) listening on http://${host}:${process.env.PORT}`);
});
