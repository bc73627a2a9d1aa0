// The support desk (inbox-ai-calls.md, "Support desk") with the npm socket.io-client: a patient
// writes to the pharmacy, a pharmacist answers over the socket, a note reaches the agents only,
// and a desk that hides its agents shows the patient the team.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { backends, startServer, record } from "./harness.js";

for (const backend of backends) {
  describe(`support desk on ${backend}`, () => {
    let server;
    before(async () => { server = await startServer(backend); });
    after(async () => { await server.stop(); });

    it("carries a patient's question to the pharmacists and the answer back, notes to agents only", async () => {
      const admin = await server.admin("Admin");
      const pharmacist = await server.signup("Pia");
      const patient = await server.signup("Pat");
      let r = await server.call("PATCH", `/workspaces/default/members/${pharmacist.id}`, admin.token, { role: "agent" });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      r = await server.call("PATCH", "/workspaces/default", admin.token, { settings: { support: { enabled: true, whoMayWrite: "members", showAgentNames: true } } });
      assert.equal(r.status, 200, JSON.stringify(r.body));

      const agentSocket = await server.connect(pharmacist);
      const atAgent = record(agentSocket, "message:new", "note:new", "conversation:updated");
      r = await server.call("POST", "/support", patient.token, { workspaceId: "default" });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const conv = r.body.id;
      assert.equal(r.body.kind, "support");
      assert.equal(r.body.status, undefined);

      const patientSocket = await server.connect(patient);
      const atPatient = record(patientSocket, "message:new", "note:new", "conversation:updated");
      const sent = await patientSocket.emitWithAck("message:send", { conversationId: conv, clientMsgId: "q1", type: "text", text: "Is ibuprofen fine?" });
      assert.equal(sent.ok, true, JSON.stringify(sent));
      const question = await atAgent.waitFor((e) => e.name === "message:new" && e.data.message.text === "Is ibuprofen fine?");
      assert.equal(question.data.message.sender.id, patient.id);

      const answered = await agentSocket.emitWithAck("message:send", { conversationId: conv, clientMsgId: "a1", type: "text", text: "Better paracetamol." });
      assert.equal(answered.ok, true, JSON.stringify(answered));
      await atPatient.waitFor((e) => e.name === "message:new" && e.data.message.text === "Better paracetamol.");

      r = await server.call("POST", `/conversations/${conv}/notes`, pharmacist.token, { text: "Ask about the blood pressure" });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const note = await atAgent.waitFor((e) => e.name === "note:new" && e.data.kind === "note");
      assert.equal(note.data.text, "Ask about the blood pressure");
      // The only agent connected got the conversation when it opened; the line says so.
      const assigned = await atAgent.waitFor((e) => e.name === "note:new" && e.data.kind === "activity");
      assert.equal(assigned.data.details.event, "assigned");
      r = await server.call("PATCH", `/conversations/${conv}`, pharmacist.token, { status: "closed" });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await atAgent.waitFor((e) => e.name === "conversation:updated" && e.data.conversation.status === "closed");
      // The patient's own view of the same change: nothing internal; and never a note.
      const update = await atPatient.waitFor((e) => e.name === "conversation:updated");
      assert.equal(update.data.conversation.status, undefined);
      assert.equal(update.data.conversation.assigneeId, undefined);
      assert.equal(atPatient.seen.filter((e) => e.name === "note:new").length, 0);

      // A desk that hides its agents: the patient sees the team (the workspace's id), the
      // agent still sees who wrote.
      r = await server.call("PATCH", "/workspaces/default", admin.token, { settings: { support: { enabled: true, whoMayWrite: "members", showAgentNames: false } } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const workspaceId = r.body.id;
      const again = await agentSocket.emitWithAck("message:send", { conversationId: conv, clientMsgId: "a2", type: "text", text: "Take it with food." });
      assert.equal(again.ok, true, JSON.stringify(again));
      assert.equal(again.message.sender.id, pharmacist.id);
      const fromTeam = await atPatient.waitFor((e) => e.name === "message:new" && e.data.message.text === "Take it with food.");
      assert.deepEqual(fromTeam.data.message.sender, { type: "user", id: workspaceId });
      for (const e of atPatient.seen) {
        if (e.name === "message:new" && e.data.message.text === "Take it with food.") {
          assert.ok(!JSON.stringify(e.data).includes(pharmacist.id), JSON.stringify(e.data));
        }
      }
    });
  });
}
