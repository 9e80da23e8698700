// The team's own history (every accepted score and every rejection reason) and its final choices.
"use strict";

const tokenOf = segkit.token(document.getElementById("token"), "segkit-team-token");
const message = document.getElementById("message");

function drawHistory(data) {
  document.getElementById("team-name").textContent = data.team;
  document.getElementById("rules").textContent = "Daily limit " + data.daily_limit + "; " + data.final_count
    + " submission(s) count at the end" + (data.chosen.length ? " (your choice)" : " (by default your best public ones)")
    + (data.ladder_margin ? "; the Ladder (margin " + data.ladder_margin + ") decides what is shown" : "")
    + (data.closed ? "; closed at " + data.closed : "");
  const rows = data.submissions.map((entry) => {
    const tr = document.createElement("tr");
    segkit.cell(tr, entry.id);
    segkit.cell(tr, entry.time.slice(0, 19).replace("T", " "));
    segkit.cell(tr, entry.file_name, "team");
    segkit.cell(tr, entry.kind);
    segkit.cell(tr, entry.status, entry.status);
    if (entry.status === "accepted") {
      segkit.cell(tr, segkit.score(entry.public_miou));
    } else {
      const reasons = segkit.cell(tr, "", "reasons");
      const list = document.createElement("ul");
      for (const problem of entry.problems) {
        const item = document.createElement("li");
        item.textContent = (problem.member === null ? "" : problem.member + ": ") + problem.message;
        list.appendChild(item);
      }
      reasons.replaceChildren(list);
    }
    segkit.cell(tr, segkit.ms(entry.ms_per_image));
    segkit.cell(tr, entry.counted ? "yes" : "");
    const pick = segkit.cell(tr, "");
    if (entry.status === "accepted") {
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = entry.id;
      box.checked = data.chosen.includes(entry.id);
      pick.replaceChildren(box);
    }
    return tr;
  });
  document.querySelector("#history tbody").replaceChildren(...rows);
}

async function load() {
  window.localStorage.setItem("segkit-team-token", tokenOf());
  const answer = await segkit.api("/api/submissions", tokenOf());
  if (answer.ok) { message.textContent = ""; drawHistory(answer.body); } else { message.textContent = answer.body.error; }
}

async function choose(ids) {
  const answer = await segkit.api("/api/choices", tokenOf(), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ids }),
  });
  if (answer.ok) { message.textContent = "Saved."; drawHistory(answer.body); } else { message.textContent = answer.body.error; }
}

document.getElementById("load").addEventListener("click", load);
document.getElementById("save-choices").addEventListener("click", () => {
  const ids = [...document.querySelectorAll("#history input[type=checkbox]:checked")].map((box) => Number(box.value));
  choose(ids);
});
document.getElementById("clear-choices").addEventListener("click", () => choose([]));
if (tokenOf()) load();
