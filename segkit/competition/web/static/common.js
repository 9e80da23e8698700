// Shared by every page of the competition service. Text from the server is always set with textContent,
// never parsed as HTML.
"use strict";

const segkit = {
  cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  },
  score(value) { return value === null || value === undefined ? "—" : value.toFixed(4); },
  ms(value) { return value === null || value === undefined ? "—" : value.toFixed(1); },
  change(value) {
    if (!value) return "–";
    return value > 0 ? "▲ " + value : "▼ " + (-value);
  },
  // The token lives in this browser's localStorage under `key`, pasted once into `input`.
  token(input, key) {
    const saved = window.localStorage.getItem(key);
    if (saved && !input.value) input.value = saved;
    input.addEventListener("change", () => window.localStorage.setItem(key, input.value.trim()));
    return () => input.value.trim();
  },
  async api(path, token, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (token) headers["Authorization"] = "Bearer " + token;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    let body;
    try { body = await response.json(); } catch (err) { body = { error: "the server answered " + response.status }; }
    return { ok: response.ok, status: response.status, body };
  },
};
