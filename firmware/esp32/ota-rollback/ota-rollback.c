/*
 * kestrel/ota-rollback on the ESP32: the native half of src/ota-rollback-esp32.ts.
 *
 * Moddable's `ota` module writes an image and sets the boot partition, but offers no way to confirm
 * the new image or to give it up. With CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE (esp32/sdkconfig) a new
 * image boots in ESP_OTA_IMG_PENDING_VERIFY; unless the app calls
 * esp_ota_mark_app_valid_cancel_rollback before its next reset, the bootloader boots the previous
 * one. These functions expose that, and what the app needs to know about the images.
 */

#include "xsmc.h"

#include "esp_app_desc.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"

/* esp_app_get_description()->version: the running image's version (PROJECT_VER). */
void xs_kestrel_ota_running_version(xsMachine *the)
{
	const esp_app_desc_t *description = esp_app_get_description();
	xsmcSetString(xsResult, (char *)description->version);
}

/* esp_ota_img_states_t of the running partition; ESP_OTA_IMG_UNDEFINED without otadata. */
void xs_kestrel_ota_running_state(xsMachine *the)
{
	esp_ota_img_states_t state = ESP_OTA_IMG_UNDEFINED;
	const esp_partition_t *running = esp_ota_get_running_partition();
	if ((NULL == running) || (ESP_OK != esp_ota_get_state_partition(running, &state)))
		state = ESP_OTA_IMG_UNDEFINED;
	xsmcSetNumber(xsResult, (double)(uint32_t)state);
}

/* The version in the partition the bootloader or the app marked invalid (or aborted); "" when none. */
void xs_kestrel_ota_last_invalid_version(xsMachine *the)
{
	esp_app_desc_t description;
	const esp_partition_t *invalid = esp_ota_get_last_invalid_partition();
	if ((NULL == invalid) || (ESP_OK != esp_ota_get_partition_description(invalid, &description))) {
		xsmcSetString(xsResult, "");
		return;
	}
	xsmcSetString(xsResult, description.version);
}

void xs_kestrel_ota_mark_valid(xsMachine *the)
{
	esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
	if (ESP_OK != err)
		xsUnknownError("mark valid failed");
}

/* Marks the running image invalid and reboots into the previous one; returns only on failure. */
void xs_kestrel_ota_rollback(xsMachine *the)
{
	esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot();
	xsUnknownError(ESP_ERR_OTA_ROLLBACK_FAILED == err ? "no app to roll back to" : "rollback failed");
}
