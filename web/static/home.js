"use strict";
// Every text from the server is set with textContent: a genre or an error can never become markup.
const form = document.getElementById("start");
const errorBox = document.getElementById("error");

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
}

fetch("/api/genres").then((r) => r.json()).then((genres) => {
  const select = document.getElementById("genre");
  for (const genre of genres) {
    const option = document.createElement("option");
    option.value = genre.id;
    option.textContent = genre.name + ": " + genre.blurb;
    select.appendChild(option);
  }
}).catch(() => showError("The genres could not be read."));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("go");
  button.disabled = true;
  button.textContent = "Writing the opening...";
  errorBox.hidden = true;
  try {
    const response = await fetch("/api/games", {
      method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify({genre: form.genre.value || null, premise: form.premise.value.trim() || null}),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || "the adventure could not start");
    window.location.assign("/g/" + encodeURIComponent(body.room));
  } catch (error) {
    showError(error.message);
    button.disabled = false;
    button.textContent = "Start the adventure";
  }
});
