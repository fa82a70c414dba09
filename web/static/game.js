"use strict";
// The play page. Every text from players or the model is set with textContent, never parsed as markup, so a
// premise like <script>alert(1)</script> shows as those characters.
const room = decodeURIComponent(window.location.pathname.split("/").pop());
const api = "/api/games/" + encodeURIComponent(room);
const $ = (id) => document.getElementById(id);
let game = null;

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function send(url, method, body) {
  const options = {method: method || "GET", headers: {}};
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json();
  if (!response.ok) throw new Error((data.error || "the request failed") + (data.hint ? "; " + data.hint : ""));
  showError("");
  return data;
}

const call = (path, method, body) => send(api + path, method, body);  // this game's API
const callMe = (method, body) => send("/api/me", method, body);  // the player's own nickname and data

function act(promise) {
  return promise.then((data) => { if (data && data.room) render(data); else if (data && data.game) render(data.game); })
    .catch((error) => showError(error.message));
}

function render(data) {
  if (data.writing) {  // the opening is still being written: its scene event brings the game
    $("status").textContent = "The storyteller is writing the opening...";
    return;
  }
  const newScene = !game || game.scene.index !== data.scene.index || game.ended !== data.ended;
  game = data;
  $("premise").textContent = data.premise;
  $("narration").textContent = data.scene.narration;
  $("draft").hidden = true;
  renderChoices();
  $("star").setAttribute("aria-pressed", String(data.your_marks.star));
  $("up").setAttribute("aria-pressed", String(data.your_marks.thumb === "up"));
  $("down").setAttribute("aria-pressed", String(data.your_marks.thumb === "down"));
  $("withdraw").hidden = data.your_vote === null;
  $("starter").hidden = !data.starter || data.ended;
  $("undo").disabled = !data.can_undo;
  $("status").textContent = data.ended ? "The adventure has ended. You can still rate its scenes."
    : (data.status === "writing" ? "The next scene is being written..." : "");
  if (document.activeElement !== $("nickname")) $("nickname").value = data.nickname || "";
  renderPlayers();
  tick();
  if (newScene) loadHistory();  // only when the story moved: a vote does not change it
}

function renderPlayers() {  // "Playing: Aiko, Ren, 2 others": nicknames as text, the rest counted
  const others = game.players - game.names.length;
  const parts = others > 0 ? [...game.names, others + (others === 1 ? " other" : " others")] : game.names;
  $("players").textContent = game.players > 1 || game.names.length ? "Playing: " + parts.join(", ") : "";
}

function renderChoices() {
  const choices = $("choices");
  choices.replaceChildren();
  game.scene.choices.forEach((text, index) => {
    const button = document.createElement("button");
    button.type = "button";
    const votes = game.votes[index] || 0;
    button.textContent = (index + 1) + ". " + text + (votes ? "  (" + votes + (votes === 1 ? " vote)" : " votes)") : "");
    button.disabled = game.ended || !game.deadline;
    if (game.your_vote === index) button.classList.add("mine");
    button.addEventListener("click", () => act(call("/vote", "POST", {choice: index})));
    choices.appendChild(button);
  });
}

async function loadHistory() {
  const scenes = await call("/history").catch(() => []);
  const list = $("history");
  list.replaceChildren();
  for (const scene of scenes.slice(0, -1)) {
    const item = document.createElement("li");
    const chosen = scene.chosen === null ? "" : "\n→ " + scene.choices[scene.chosen];
    item.textContent = scene.narration + chosen;
    list.appendChild(item);
  }
}

function tick() {
  if (!game || !game.deadline || game.ended) {
    $("countdown").textContent = "";
    return;
  }
  const left = Math.max(0, Math.round((Date.parse(game.deadline) - Date.now()) / 1000));
  $("countdown").textContent = left > 0 ? "The vote closes in " + left + " s" : "The vote is closing...";
}

function refresh() {
  return act(call(""));
}

function listen() {
  const events = new EventSource(api + "/events");
  for (const kind of ["scene", "extended", "ended"]) events.addEventListener(kind, refresh);
  events.addEventListener("votes", (event) => {  // new counts: drawn here, no request (a busy vote would
    if (!game) return;                             // otherwise make every browser ask at every vote)
    game.votes = JSON.parse(event.data).votes;
    renderChoices();
  });
  events.addEventListener("draft", (event) => {
    const text = JSON.parse(event.data).text;
    $("draft").textContent = text || "";
    $("draft").hidden = !text;
  });
  events.addEventListener("failed", (event) => { showError(JSON.parse(event.data).reason); refresh(); });
  events.addEventListener("notice", (event) => { $("status").textContent = JSON.parse(event.data).text; });
  events.addEventListener("open", refresh);  // after a reconnect, catch up on what was missed
}

function mark(name) {
  const on = name === "star" ? !game.your_marks.star : game.your_marks.thumb !== name;
  act(call("/rate", "POST", {mark: name, on: on}));
}

for (const name of ["star", "up", "down"]) $(name).addEventListener("click", () => mark(name));
$("withdraw").addEventListener("click", () => act(call("/vote", "DELETE")));
for (const what of ["retry", "undo", "end"]) {
  $(what).addEventListener("click", () => {
    if (what === "end" && !window.confirm("End the adventure for everyone?")) return;
    act(call("/" + what, "POST"));
  });
}
$("feedback").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("feedback-text").value.trim();
  if (!text) return;
  call("/feedback", "POST", {text: text}).then(() => {
    $("feedback-text").value = "";
    $("status").textContent = "Thank you for the feedback.";
  }).catch((error) => showError(error.message));
});
$("nick").addEventListener("submit", (event) => {
  event.preventDefault();
  callMe("POST", {nickname: $("nickname").value}).then(refresh).catch((error) => showError(error.message));
});
$("privacy").addEventListener("toggle", () => {
  if ($("privacy").open) callMe("GET").then((me) => { $("opt-out").checked = me.opted_out; }).catch(() => {});
});
$("opt-out").addEventListener("change", () => {
  callMe("POST", {opted_out: $("opt-out").checked}).catch((error) => showError(error.message));
});
$("forget").addEventListener("click", () => {
  if (!window.confirm("Delete your votes, ratings, feedback, nickname and the games you started?")) return;
  callMe("DELETE").then((data) => {
    const gone = data.forgotten;
    $("status").textContent = "Deleted: " + gone.votes + " votes, " + gone.ratings + " ratings, " + gone.comments
      + " comments, " + gone.games + " games you started.";
    refresh();
  }).catch((error) => showError(error.message));
});
$("share").addEventListener("click", () => {
  navigator.clipboard.writeText(window.location.href).then(() => { $("share").textContent = "Link copied"; });
});

setInterval(tick, 1000);
refresh();
listen();
