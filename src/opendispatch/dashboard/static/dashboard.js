// The dashboard works without this script; it only asks before a destructive form is sent,
// and refreshes a running workflow's page when asked to.
"use strict";

document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

document.querySelectorAll("input[data-refresh]").forEach((box) => {
  const key = "opendispatch-refresh";
  box.checked = sessionStorage.getItem(key) === "on";
  const schedule = () => {
    if (box.checked) {
      window.setTimeout(() => { if (box.checked) window.location.reload(); },
                        Number(box.dataset.refresh) * 1000);
    }
  };
  box.addEventListener("change", () => {
    sessionStorage.setItem(key, box.checked ? "on" : "off");
    schedule();
  });
  schedule();
});
