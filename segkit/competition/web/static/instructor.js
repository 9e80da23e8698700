// The instructor's page: the private board, each team's counted submissions, and closing the competition.
"use strict";

const tokenOf = segkit.token(document.getElementById("token"), "segkit-instructor-token");
const message = document.getElementById("message");

function drawInstructor(data) {
  document.getElementById("state").textContent = data.closed ? "(closed at " + data.closed + ": public now)"
    : "(open: only you see this)";
  document.getElementById("close").disabled = Boolean(data.closed);
  const rows = data.rows.map((entry) => {
    const tr = document.createElement("tr");
    segkit.cell(tr, entry.rank);
    segkit.cell(tr, entry.team, "team");
    segkit.cell(tr, segkit.score(entry.private));
    segkit.cell(tr, segkit.score(entry.public));
    segkit.cell(tr, entry.public_rank);
    segkit.cell(tr, segkit.change(entry.change));
    segkit.cell(tr, entry.counted.map((id) => "#" + id).join(", "));
    segkit.cell(tr, entry.chosen ? "yes" : "no (best public)");
    return tr;
  });
  document.querySelector("#private tbody").replaceChildren(...rows);
  const teams = data.teams.map((entry) => {
    const tr = document.createElement("tr");
    segkit.cell(tr, entry.team, "team");
    segkit.cell(tr, entry.accepted);
    segkit.cell(tr, entry.rejected);
    return tr;
  });
  document.querySelector("#teams tbody").replaceChildren(...teams);
  message.textContent = data.unscored_uploads ? data.unscored_uploads + " upload(s) waiting to be scored" : "";
}

async function load() {
  window.localStorage.setItem("segkit-instructor-token", tokenOf());
  const answer = await segkit.api("/api/instructor", tokenOf());
  if (answer.ok) drawInstructor(answer.body); else message.textContent = answer.body.error;
}

document.getElementById("load").addEventListener("click", load);
document.getElementById("close").addEventListener("click", async () => {
  if (!window.confirm("Close the competition? No more submissions; the final ranking becomes public.")) return;
  const answer = await segkit.api("/api/instructor/close", tokenOf(), { method: "POST" });
  if (answer.ok) drawInstructor(answer.body); else message.textContent = answer.body.error;
});
if (tokenOf()) load();
