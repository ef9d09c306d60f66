// The run list refreshes itself every 15 s while visible (health changes show up).
setInterval(function () { if (!document.hidden) window.location.reload(); }, 15000);
