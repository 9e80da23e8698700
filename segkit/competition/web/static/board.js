// The live leaderboard: fetch /api/leaderboard every few seconds and rebuild the table (no page reload).
"use strict";

function headerCells(final) {
  return final
    ? ["Rank", "Team", "Private mIoU", "Public mIoU", "Public rank", "Change", "ms / image"]
    : ["Rank", "Team", "Public mIoU", "Submissions", "Last (UTC)", "ms / image"];
}

function drawBoard(data) {
  document.getElementById("title").textContent = data.title;
  document.title = data.title;
  document.getElementById("note").textContent = data.note;
  const header = document.getElementById("header");
  header.replaceChildren();
  for (const name of headerCells(data.final)) {
    const th = document.createElement("th");
    th.textContent = name;
    if (name === "Team") th.className = "team";
    header.appendChild(th);
  }
  const body = document.getElementById("rows");
  const rows = data.rows.map((entry) => {
    const tr = document.createElement("tr");
    segkit.cell(tr, entry.rank);
    segkit.cell(tr, entry.team, "team");
    segkit.cell(tr, segkit.score(entry.score));
    if (data.final) {
      segkit.cell(tr, segkit.score(entry.public_score));
      segkit.cell(tr, entry.public_rank);
      const change = segkit.cell(tr, segkit.change(entry.change));
      if (entry.change) change.className = entry.change > 0 ? "up" : "down";
    } else {
      segkit.cell(tr, entry.submissions);
      segkit.cell(tr, entry.last.slice(0, 16).replace("T", " "));
    }
    segkit.cell(tr, segkit.ms(entry.ms_per_image));
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("empty").hidden = data.rows.length > 0;
  const stamp = new Date().toISOString().slice(11, 19);
  document.getElementById("updated").textContent = "Updated at " + stamp + " UTC; updates itself every 5 seconds.";
}

async function refreshBoard() {
  try {
    const answer = await segkit.api("/api/leaderboard");
    if (answer.ok) drawBoard(answer.body);
  } catch (err) {
    document.getElementById("updated").textContent = "The server did not answer; trying again.";
  }
}

refreshBoard();
window.setInterval(refreshBoard, 5000);
