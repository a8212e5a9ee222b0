// Progressive enhancement only: every page works without this file.
// Choosing a professional from the directory clears a typed GLN (and the other way round), so the
// form never carries two different professionals.
document.addEventListener("DOMContentLoaded", () => {
  const chosen = document.getElementById("grant-directory");
  const typed = document.getElementById("grant-gln");
  if (chosen && typed) {
    chosen.addEventListener("change", () => { if (chosen.value) typed.value = ""; });
    typed.addEventListener("input", () => { if (typed.value) chosen.value = ""; });
  }
});
