/*
 * The C half of the test host: FreeSWITCH core functions that are variadic
 * and so cannot be defined in stable Rust. Everything else lives in
 * tests/harness/core.rs.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switch.h"

/* Implemented in Rust (tests/harness/core.rs). */
extern void cc_events_host_log(int level, const char *file, const char *func, int line, const char *msg);

void switch_log_printf(switch_text_channel_t channel, const char *file, const char *func, int line,
					   const char *userdata, switch_log_level_t level, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;
	int n;

	(void)channel;
	(void)userdata;
	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0) {
		return;
	}
	cc_events_host_log((int)level, file, func, line, msg);
	free(msg);
}

/* FreeSWITCH's console stream writer (switch_console.c), which
 * SWITCH_STANDARD_STREAM installs: grows data with realloc, NUL kept. */
switch_status_t switch_console_stream_write(switch_stream_handle_t *handle, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;
	size_t need;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		return SWITCH_STATUS_MEMERR;
	}
	need = handle->data_len + (size_t)n + 1;
	if (need > handle->data_size) {
		size_t size = handle->data_size;
		void *grown;
		while (size < need) {
			size += handle->alloc_chunk;
		}
		grown = realloc(handle->data, size);
		if (!grown) {
			free(s);
			return SWITCH_STATUS_MEMERR;
		}
		handle->data = grown;
		handle->data_size = size;
		handle->alloc_len = size;
	}
	memcpy((char *)handle->data + handle->data_len, s, (size_t)n + 1);
	handle->data_len += (size_t)n;
	handle->end = (char *)handle->data + handle->data_len;
	free(s);
	return SWITCH_STATUS_SUCCESS;
}

switch_status_t switch_console_stream_raw_write(switch_stream_handle_t *handle, uint8_t *data, switch_size_t datalen)
{
	size_t need = handle->data_len + datalen + 1;
	if (need > handle->data_size) {
		void *grown = realloc(handle->data, need + handle->alloc_chunk);
		if (!grown) {
			return SWITCH_STATUS_MEMERR;
		}
		handle->data = grown;
		handle->data_size = need + handle->alloc_chunk;
		handle->alloc_len = handle->data_size;
	}
	memcpy((char *)handle->data + handle->data_len, data, datalen);
	handle->data_len += datalen;
	((char *)handle->data)[handle->data_len] = '\0';
	handle->end = (char *)handle->data + handle->data_len;
	return SWITCH_STATUS_SUCCESS;
}

void cc_events_host_stream_init(switch_stream_handle_t *handle)
{
	memset(handle, 0, sizeof(*handle));
	handle->data = calloc(1, 1024);
	handle->data_size = 1024;
	handle->alloc_len = 1024;
	handle->alloc_chunk = 1024;
	handle->end = handle->data;
	handle->write_function = switch_console_stream_write;
	handle->raw_write_function = switch_console_stream_raw_write;
}

void cc_events_host_stream_free(switch_stream_handle_t *handle)
{
	free(handle->data);
	handle->data = NULL;
	handle->end = NULL;
}
