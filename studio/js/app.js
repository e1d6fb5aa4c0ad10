// Studio's shell: sign-in, navigation (hash routes, so the server serves one page) and the
// page modules. Until a token is accepted only the sign-in form is shown.

import { token, verify, whenSignedOut } from "./api.js";
import { fill, h } from "./ui.js";
import * as data from "./data.js";
import * as live from "./live.js";
import * as realtime from "./realtime.js";
import * as ops from "./ops.js";
import * as health from "./health.js";

const pages = {
  data: data.render,
  live: live.render,
  rooms: realtime.rooms,
  shards: realtime.shards,
  jobs: ops.jobs,
  files: ops.files,
  users: ops.users,
  cache: ops.cache,
  health: health.render,
};

const $ = (id) => document.getElementById(id);
let manifest = null;
let cleanup = null;

function showSignIn(message = "") {
  manifest = null;
  leave();
  $("view").hidden = true;
  fill($("view"));
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  $("token").value = "";
  $("token").focus();
}

function leave() {
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
  }
  cleanup = null;
}

async function signIn(candidate) {
  const err = $("sign-in-error");
  err.textContent = "";
  if (!candidate) {
    err.textContent = "Enter the admin token.";
    return;
  }
  try {
    manifest = await verify(candidate);
  } catch (e) {
    token.clear();
    err.textContent = e.status === 401 || e.status === 403
      ? "That token was refused: it is not this server's admin token."
      : `Could not sign in: ${e.message}`;
    $("token").select();
    return;
  }
  token.set(candidate);
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  $("view").hidden = false;
  if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/data";
  else route();
}

function route() {
  if (!manifest) return;
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = pages[name] ? name : "data";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#/${page}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  leave();
  $("toast").classList.remove("shown");
  const view = fill($("view"));
  view.dataset.page = page;
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · Plaza Studio`;
  const ctx = { manifest, params: rest };
  try {
    cleanup = pages[page](view, ctx) || null;
  } catch (e) {
    view.append(h("p.error", { role: "alert" }, `This page failed: ${e.message}`));
  }
  const heading = view.querySelector("h1");
  if (heading && document.activeElement === document.body) heading.focus({ preventScroll: true });
}

$("sign-in-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("token").value.trim());
});
$("sign-out").addEventListener("click", () => {
  token.clear();
  showSignIn("Signed out.");
});
window.addEventListener("hashchange", route);
whenSignedOut(() => {
  token.clear();
  showSignIn("The server no longer accepts this token; sign in again.");
});

const saved = token.get();
if (saved) {
  $("sign-in").hidden = true;
  verify(saved).then(
    (m) => {
      manifest = m;
      $("nav").hidden = false;
      $("sign-out").hidden = false;
      $("view").hidden = false;
      if (!location.hash || location.hash === "#/") location.hash = "#/data";
      else route();
    },
    () => {
      token.clear();
      showSignIn();
    },
  );
} else {
  showSignIn();
}
