// `age -d -i IDENTITY_FILE < in > out`, by an independent implementation of the format: age-encryption (typage, by
// age's authors). The tests use it where the `age` binary is not installed. Reads the whole input: test-sized files.
import * as age from "age-encryption"
import { readFileSync } from "node:fs"

const identities = readFileSync(process.argv[2], "utf8").split("\n").map(line => line.trim())
  .filter(line => line.startsWith("AGE-SECRET-KEY-1"))
const decrypter = new age.Decrypter()
for (const identity of identities) decrypter.addIdentity(identity)
try {
  process.stdout.write(await decrypter.decrypt(new Uint8Array(readFileSync(0))))
} catch (error) {
  process.stderr.write(`age-encryption: ${error.message}\n`)
  process.exit(1)
}
