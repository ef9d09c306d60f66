// A link opened from an alert (another site) arrives without the SameSite=Strict cookie.
// This same-site request carries it: if the visitor is already signed in, go straight on.
(function () {
  var form = document.getElementById("login-form");
  if (!form) return;
  fetch("/login/check", { credentials: "same-origin" }).then(function (response) {
    return response.json();
  }).then(function (body) {
    if (body.signed_in) window.location.replace(form.dataset.next || "/");
  }).catch(function () {});
})();
