// If a page's Python never comes up (a missing file, a broken wheel), say so instead of spinning
// forever. Every page loads it the same way:
//   <script src="/boot-watchdog.js" data-seconds="60"></script>
// The page sets document.body.dataset.state from "booting" to "ready" (or "error") itself.
(() => {
  const seconds = Number(document.currentScript.dataset.seconds || 60);
  setTimeout(() => {
    if (document.body.dataset.state !== "booting") return;
    const box = document.getElementById("error");
    box.textContent = `Python did not start within ${seconds} s. Check the browser console; ` +
      "rebuild the site with `python3 build.py site`.";
    box.hidden = false;
    document.body.dataset.state = "error";
  }, seconds * 1000);
})();
