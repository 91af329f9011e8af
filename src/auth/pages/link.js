// Reads the token from the URL fragment (never sent to any server), removes it from the
// address bar, and posts it with the form's fields as JSON.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  history.replaceState(null, "", location.pathname);
  var form = document.getElementById("form");
  var result = document.getElementById("result");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = { token: token };
    var passwordField = form.dataset.passwordField;
    Array.prototype.forEach.call(form.elements, function (input) {
      if (!input.name) return;
      body[input.name === "password" && passwordField ? passwordField : input.name] = input.value;
    });
    fetch(form.dataset.endpoint, {
      method: "POST",
      headers: { "content-type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    })
      .then(function (response) {
        return response.json().then(function (json) {
          result.textContent = response.ok
            ? "Done. You can close this page."
            : (json.error && json.error.message) || "Something went wrong.";
        });
      })
      .catch(function () {
        result.textContent = "The server could not be reached.";
      });
  });
});
