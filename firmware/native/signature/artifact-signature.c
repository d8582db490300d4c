/*
 * kestrel/artifact-signature: SHA-256 and ECDSA P-256 verification for signed artifacts (plugins),
 * with mbedTLS: the ESP-IDF's copy on the ESP32 (hardware SHA and ECC where the chip has them), and
 * Debian's libmbedtls in the simulator's XS worker, so the device and the simulator run the same C.
 */

#include <string.h>

#include "xsmc.h"

#include "mbedtls/ecdsa.h"
#include "mbedtls/ecp.h"
#include "mbedtls/sha256.h"
#include "mbedtls/version.h"

#define P256_COORDINATE 32
#define P256_PUBLIC_KEY (1 + 2 * P256_COORDINATE) /* uncompressed point: 0x04 || X || Y */
#define SHA256_BYTES 32

/* sha256(bytes): the digest as a 32-byte ArrayBuffer. */
void xs_artifact_sha256(xsMachine *the)
{
	void *data;
	xsUnsignedValue length;
	uint8_t digest[SHA256_BYTES];
	xsmcGetBufferReadable(xsArg(0), &data, &length);
#if MBEDTLS_VERSION_MAJOR >= 3
	int failed = mbedtls_sha256(data, length, digest, 0);
#else
	int failed = mbedtls_sha256_ret(data, length, digest, 0);
#endif
	if (failed)
		xsUnknownError("sha256 failed");
	xsmcSetArrayBuffer(xsResult, digest, sizeof(digest));
}

/* verifyP256(publicKey 65 bytes, digest 32 bytes, signature 64 bytes r || s): true when it verifies. */
void xs_artifact_verify_p256(xsMachine *the)
{
	void *key, *digest, *signature;
	xsUnsignedValue keyLength, digestLength, signatureLength;
	xsmcGetBufferReadable(xsArg(0), &key, &keyLength);
	xsmcGetBufferReadable(xsArg(1), &digest, &digestLength);
	xsmcGetBufferReadable(xsArg(2), &signature, &signatureLength);
	if (keyLength != P256_PUBLIC_KEY || digestLength != SHA256_BYTES || signatureLength != 2 * P256_COORDINATE)
		xsRangeError("P-256 verification takes a 65-byte public key, a 32-byte digest and a 64-byte signature");

	mbedtls_ecp_group group;
	mbedtls_ecp_point point;
	mbedtls_mpi r, s;
	mbedtls_ecp_group_init(&group);
	mbedtls_ecp_point_init(&point);
	mbedtls_mpi_init(&r);
	mbedtls_mpi_init(&s);
	int failed = mbedtls_ecp_group_load(&group, MBEDTLS_ECP_DP_SECP256R1)
		|| mbedtls_ecp_point_read_binary(&group, &point, key, keyLength)
		|| mbedtls_ecp_check_pubkey(&group, &point)
		|| mbedtls_mpi_read_binary(&r, signature, P256_COORDINATE)
		|| mbedtls_mpi_read_binary(&s, (const uint8_t *)signature + P256_COORDINATE, P256_COORDINATE)
		|| mbedtls_ecdsa_verify(&group, digest, digestLength, &point, &r, &s);
	mbedtls_mpi_free(&s);
	mbedtls_mpi_free(&r);
	mbedtls_ecp_point_free(&point);
	mbedtls_ecp_group_free(&group);
	xsmcSetBoolean(xsResult, !failed);
}
