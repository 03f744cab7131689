// The dashboard's only script of its own (the CSP allows no inline script): it sends the
// CSRF token with htmx requests and wires the "select all" box of the jobs page.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
});
document.addEventListener("change", function (event) {
  if (event.target && event.target.id === "select-all") {
    document.querySelectorAll("input.select").forEach(function (box) {
      box.checked = event.target.checked;
    });
  }
});
