// MathJax 3 for the course site, served from the site itself (node_modules/mathjax, copied by docs/site.py):
// the lectures' formulas (\( \) and \[ \] from pymdownx.arithmatex) and the notebooks' ($ and $$).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
  },
  svg: { fontCache: "global" },
};
