// The upload page: the team's token (kept in this browser) and one file, sent to POST /api/submissions.
"use strict";

const tokenOf = segkit.token(document.getElementById("token"), "segkit-team-token");
const fileInput = document.getElementById("file");
const drop = document.getElementById("drop");
let chosenFile = null;

function choose(file) {
  chosenFile = file;
  document.getElementById("chosen").textContent = file ? file.name + " (" + file.size + " bytes)" : "";
}

fileInput.addEventListener("change", () => choose(fileInput.files[0] || null));
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) choose(event.dataTransfer.files[0]);
});

function showResult(answer) {
  const result = document.getElementById("result");
  result.hidden = false;
  const verdict = document.getElementById("verdict");
  const score = document.getElementById("score");
  const problems = document.getElementById("problems");
  const table = document.getElementById("per-class");
  problems.replaceChildren();
  table.hidden = true;
  document.getElementById("report").textContent = "";
  if (!answer.ok) {
    verdict.textContent = "Not sent: " + (answer.body.error || answer.status);
    verdict.className = "rejected";
    score.textContent = "";
    return;
  }
  const body = answer.body;
  verdict.textContent = "Submission #" + body.id + ": " + (body.accepted ? "ACCEPTED" : "REJECTED");
  verdict.className = body.accepted ? "accepted" : "rejected";
  if (body.accepted) {
    let text = "Public mIoU: " + segkit.score(body.public_miou);
    if (body.ladder) text = "Shown public score (Ladder, margin " + body.ladder.margin + "): "
      + segkit.score(body.public_miou) + (body.ladder.moved ? " (it moved)" : " (it did not move)");
    if (body.seconds_per_image !== null) text += " — " + (1000 * body.seconds_per_image).toFixed(1) + " ms per image";
    score.textContent = text + " — " + body.used_today + " of " + body.daily_limit + " used today (UTC)";
  } else {
    score.textContent = body.problems.length + " problem(s); it does not count toward the daily limit:";
  }
  for (const problem of body.problems) {
    const item = document.createElement("li");
    if (problem.member !== null) {
      const code = document.createElement("code");
      code.textContent = problem.member;
      item.appendChild(code);
      item.appendChild(document.createTextNode(": "));
    }
    item.appendChild(document.createTextNode(problem.message));
    problems.appendChild(item);
  }
  if (body.per_class) {
    const rows = body.per_class.map((entry) => {
      const tr = document.createElement("tr");
      segkit.cell(tr, entry.class, "team");
      for (const key of ["iou", "precision", "recall"]) {
        segkit.cell(tr, entry[key] === null ? "—" : (100 * entry[key]).toFixed(1));
      }
      return tr;
    });
    table.tBodies[0].replaceChildren(...rows);
    table.hidden = false;
  }
  document.getElementById("report").textContent = body.report;
}

document.getElementById("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!chosenFile) { showResult({ ok: false, status: 0, body: { error: "choose a file first" } }); return; }
  window.localStorage.setItem("segkit-team-token", tokenOf());
  const form = new FormData();
  form.append("file", chosenFile, chosenFile.name);
  const button = document.getElementById("send");
  button.disabled = true;
  button.textContent = "Scoring…";
  try {
    showResult(await segkit.api("/api/submissions", tokenOf(), { method: "POST", body: form }));
  } catch (err) {
    showResult({ ok: false, status: 0, body: { error: "the server did not answer (" + err + ")" } });
  } finally {
    button.disabled = false;
    button.textContent = "Submit";
  }
});
