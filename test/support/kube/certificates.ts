import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const OPENSSL = process.env.CORRAL_OPENSSL ?? "openssl";
// Long enough for any test run, short enough that a leaked key is worthless soon.
const DAYS = "2";
/** The names a client may use for the API server: loopback, and the in-cluster service names. */
export const API_SERVER_SANS = ["IP:127.0.0.1", "DNS:localhost", "IP:10.0.0.1", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc"];

export interface KubeCertificates {
  /** PEM of the CA that signed the serving cert; clients trust it. */
  caPem: string;
  caCertFile: string;
  servingCertFile: string;
  servingKeyFile: string;
  /** RSA pair: the API server signs service-account tokens with the private key and checks them with the public one. */
  serviceAccountKeyFile: string;
  serviceAccountPublicKeyFile: string;
}

/** A throwaway PKI for one test cluster, written into dir (which should be private to the test run). */
export async function createKubeCertificates(dir: string): Promise<KubeCertificates> {
  const file = (name: string) => join(dir, name);
  // EC keys: generated in milliseconds, where RSA takes a noticeable moment on a busy machine.
  await openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", file("ca.key"), "-out", file("ca.crt"), "-days", DAYS, "-subj", "/CN=corral-test-ca",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  await openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-CA", file("ca.crt"), "-CAkey", file("ca.key"),
    "-keyout", file("apiserver.key"), "-out", file("apiserver.crt"), "-days", DAYS, "-subj", "/CN=kube-apiserver",
    "-addext", `subjectAltName=${API_SERVER_SANS.join(",")}`,
    "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature",
    "-addext", "extendedKeyUsage=serverAuth");
  // Service-account tokens are RS256 by default, so this pair must be RSA.
  await openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", file("sa.key"));
  await openssl("pkey", "-in", file("sa.key"), "-pubout", "-out", file("sa.pub"));
  return {
    caPem: await readFile(file("ca.crt"), "utf8"),
    caCertFile: file("ca.crt"),
    servingCertFile: file("apiserver.crt"),
    servingKeyFile: file("apiserver.key"),
    serviceAccountKeyFile: file("sa.key"),
    serviceAccountPublicKeyFile: file("sa.pub"),
  };
}

/** A self-signed serving cert for 127.0.0.1, as a kubelet makes for itself when given none. */
export async function createSelfSignedServingCert(dir: string, commonName: string): Promise<{ certPem: string; keyPem: string }> {
  const cert = join(dir, "serving.crt");
  const key = join(dir, "serving.key");
  await openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", DAYS, "-subj", `/CN=${commonName}`,
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "extendedKeyUsage=serverAuth");
  return { certPem: await readFile(cert, "utf8"), keyPem: await readFile(key, "utf8") };
}

async function openssl(...args: string[]): Promise<void> {
  try {
    await run(OPENSSL, args, { timeout: 30_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`openssl ${args[0]} failed${stderr ? `: ${stderr}` : ""}`, { cause: error });
  }
}
