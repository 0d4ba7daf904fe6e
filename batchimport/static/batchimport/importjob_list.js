// Live progress: while a job on the list runs, reload the list every 3 seconds.
// A file, not inline: the content security policy allows only our own scripts.
"use strict";
if (document.querySelector("progress.import-running")) {
  setTimeout(() => location.reload(), 3000);
}
