/** The `ext4-workdisk` program: runs the command line (src/cli/) and sets the exit code. */
import { main } from './cli/main.js';

// A command whose work never settles (a stream that neither ends nor fails) must not look like success.
process.exitCode = 70;
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
