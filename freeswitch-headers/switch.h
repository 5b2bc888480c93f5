/*
 * mod_cc_events: the subset of FreeSWITCH 1.10's public C ABI that the module
 * (and its test host) uses. Written for this project from the documented
 * layouts; names, types, member order and enum values match FreeSWITCH 1.10
 * (SWITCH_API_VERSION 5) so that bindgen produces the same Rust types it would
 * produce from an installed FreeSWITCH. tests/abi_layout.rs checks that.
 *
 * Only what the module touches is declared. Types the module only passes
 * through (sessions, channels, memory pools, module interfaces) stay opaque.
 */
#ifndef MOD_CC_EVENTS_SWITCH_SUBSET_H
#define MOD_CC_EVENTS_SWITCH_SUBSET_H

#include <stdint.h>
#include <stddef.h>

#define SWITCH_API_VERSION 5

typedef uintptr_t switch_size_t;

typedef enum {
	SWITCH_FALSE = 0,
	SWITCH_TRUE = 1
} switch_bool_t;

typedef enum {
	SWITCH_STATUS_SUCCESS,
	SWITCH_STATUS_FALSE,
	SWITCH_STATUS_TIMEOUT,
	SWITCH_STATUS_RESTART,
	SWITCH_STATUS_INTR,
	SWITCH_STATUS_NOTIMPL,
	SWITCH_STATUS_MEMERR,
	SWITCH_STATUS_NOOP,
	SWITCH_STATUS_RESAMPLE,
	SWITCH_STATUS_GENERR,
	SWITCH_STATUS_INUSE,
	SWITCH_STATUS_BREAK,
	SWITCH_STATUS_SOCKERR,
	SWITCH_STATUS_MORE_DATA,
	SWITCH_STATUS_NOTFOUND,
	SWITCH_STATUS_UNLOAD,
	SWITCH_STATUS_NOUNLOAD,
	SWITCH_STATUS_IGNORE,
	SWITCH_STATUS_TOO_SMALL,
	SWITCH_STATUS_FOUND,
	SWITCH_STATUS_CONTINUE,
	SWITCH_STATUS_TERM,
	SWITCH_STATUS_NOT_INITALIZED,
	SWITCH_STATUS_TOO_LATE,
	SWITCH_STATUS_XBREAK = 35,
	SWITCH_STATUS_WINBREAK = 730035
} switch_status_t;

typedef enum {
	SWITCH_LOG_DEBUG10 = 110,
	SWITCH_LOG_DEBUG9 = 109,
	SWITCH_LOG_DEBUG8 = 108,
	SWITCH_LOG_DEBUG7 = 107,
	SWITCH_LOG_DEBUG6 = 106,
	SWITCH_LOG_DEBUG5 = 105,
	SWITCH_LOG_DEBUG4 = 104,
	SWITCH_LOG_DEBUG3 = 103,
	SWITCH_LOG_DEBUG2 = 102,
	SWITCH_LOG_DEBUG1 = 101,
	SWITCH_LOG_DEBUG = 7,
	SWITCH_LOG_INFO = 6,
	SWITCH_LOG_NOTICE = 5,
	SWITCH_LOG_WARNING = 4,
	SWITCH_LOG_ERROR = 3,
	SWITCH_LOG_CRIT = 2,
	SWITCH_LOG_ALERT = 1,
	SWITCH_LOG_CONSOLE = 0,
	SWITCH_LOG_DISABLE = -1,
	SWITCH_LOG_INVALID = 64,
	SWITCH_LOG_UNINIT = 1000
} switch_log_level_t;

typedef enum {
	SWITCH_CHANNEL_ID_LOG,
	SWITCH_CHANNEL_ID_LOG_CLEAN,
	SWITCH_CHANNEL_ID_EVENT,
	SWITCH_CHANNEL_ID_SESSION
} switch_text_channel_t;

typedef enum {
	SWITCH_PRIORITY_NORMAL,
	SWITCH_PRIORITY_LOW,
	SWITCH_PRIORITY_HIGH
} switch_priority_t;

/* Only the first member's value matters to the module (CUSTOM = 0); the
 * enum's size is that of an int either way. */
typedef enum {
	SWITCH_EVENT_CUSTOM
} switch_event_types_t;

typedef enum {
	SWITCH_ENDPOINT_INTERFACE,
	SWITCH_TIMER_INTERFACE,
	SWITCH_DIALPLAN_INTERFACE,
	SWITCH_CODEC_INTERFACE,
	SWITCH_APPLICATION_INTERFACE,
	SWITCH_API_INTERFACE,
	SWITCH_FILE_INTERFACE,
	SWITCH_SPEECH_INTERFACE,
	SWITCH_DIRECTORY_INTERFACE,
	SWITCH_CHAT_INTERFACE,
	SWITCH_SAY_INTERFACE,
	SWITCH_ASR_INTERFACE,
	SWITCH_MANAGEMENT_INTERFACE,
	SWITCH_LIMIT_INTERFACE,
	SWITCH_CHAT_APPLICATION_INTERFACE,
	SWITCH_JSON_API_INTERFACE,
	SWITCH_DATABASE_INTERFACE
} switch_module_interface_name_t;

typedef uint32_t switch_module_flag_t;

/* Opaque to the module. */
typedef struct apr_pool_t switch_memory_pool_t;
typedef struct switch_core_session switch_core_session_t;
typedef struct switch_channel switch_channel_t;
typedef struct switch_loadable_module_interface switch_loadable_module_interface_t;
typedef struct switch_event_node switch_event_node_t;
typedef struct apr_thread_rwlock_t switch_thread_rwlock_t;
typedef struct apr_thread_mutex_t switch_mutex_t;

typedef struct switch_event_header {
	char *name;
	char *value;
	char **array;
	int idx;
	unsigned long hash;
	struct switch_event_header *next;
} switch_event_header_t;

typedef struct switch_event {
	switch_event_types_t event_id;
	switch_priority_t priority;
	char *owner;
	char *subclass_name;
	switch_event_header_t *headers;
	switch_event_header_t *last_header;
	char *body;
	void *bind_user_data;
	void *event_user_data;
	unsigned long key;
	struct switch_event *next;
	int flags;
} switch_event_t;

typedef void (*switch_event_callback_t) (switch_event_t *);

typedef struct switch_stream_handle switch_stream_handle_t;
typedef uint8_t * (*switch_stream_handle_read_function_t) (switch_stream_handle_t *handle, int *len);
typedef switch_status_t (*switch_stream_handle_write_function_t) (switch_stream_handle_t *handle, const char *fmt, ...);
typedef switch_status_t (*switch_stream_handle_raw_write_function_t) (switch_stream_handle_t *handle, uint8_t *data, switch_size_t datalen);

struct switch_stream_handle {
	switch_stream_handle_read_function_t read_function;
	switch_stream_handle_write_function_t write_function;
	switch_stream_handle_raw_write_function_t raw_write_function;
	void *data;
	void *end;
	switch_size_t data_size;
	switch_size_t data_len;
	switch_size_t alloc_len;
	switch_size_t alloc_chunk;
	switch_event_t *param_event;
};

typedef switch_status_t (*switch_api_function_t) (const char *cmd, switch_core_session_t *session, switch_stream_handle_t *stream);

typedef struct switch_api_interface {
	const char *interface_name;
	const char *desc;
	switch_api_function_t function;
	const char *syntax;
	switch_thread_rwlock_t *rwlock;
	int refs;
	switch_mutex_t *reflock;
	switch_loadable_module_interface_t *parent;
	struct switch_api_interface *next;
} switch_api_interface_t;

typedef struct switch_xml *switch_xml_t;
struct switch_xml {
	char *name;
	char **attr;
	char *txt;
	char *free_path;
	switch_size_t off;
	switch_xml_t next;
	switch_xml_t sibling;
	switch_xml_t ordered;
	switch_xml_t child;
	switch_xml_t parent;
	uint32_t flags;
	switch_bool_t is_switch_xml_root_t;
	uint32_t refs;
	const char *open;
	const char *close;
};

typedef switch_status_t (*switch_module_load_t) (switch_loadable_module_interface_t **module_interface, switch_memory_pool_t *pool);
typedef switch_status_t (*switch_module_runtime_t) (void);
typedef switch_status_t (*switch_module_shutdown_t) (void);

typedef struct switch_loadable_module_function_table {
	int switch_api_version;
	switch_module_load_t load;
	switch_module_shutdown_t shutdown;
	switch_module_runtime_t runtime;
	switch_module_flag_t flags;
} switch_loadable_module_function_table_t;

/* Core functions, resolved against the running FreeSWITCH at dlopen time. */
switch_loadable_module_interface_t *switch_loadable_module_create_module_interface(switch_memory_pool_t *pool, const char *name);
void *switch_loadable_module_create_interface(switch_loadable_module_interface_t *mod, switch_module_interface_name_t iname);

switch_status_t switch_event_bind_removable(const char *id, switch_event_types_t event, const char *subclass_name,
											switch_event_callback_t callback, void *user_data, switch_event_node_t **node);
switch_status_t switch_event_unbind(switch_event_node_t **node);
char *switch_event_get_header_idx(switch_event_t *event, const char *header_name, int idx);

switch_core_session_t *switch_core_session_perform_locate(const char *uuid_str, const char *file, const char *func, int line);
switch_channel_t *switch_core_session_get_channel(switch_core_session_t *session);
void switch_core_session_rwunlock(switch_core_session_t *session);
const char *switch_channel_get_variable_dup(switch_channel_t *channel, const char *varname, switch_bool_t dup, int idx);

switch_xml_t switch_xml_open_cfg(const char *file_path, switch_xml_t *node, switch_event_t *params);
switch_xml_t switch_xml_child(switch_xml_t xml, const char *name);
const char *switch_xml_attr_soft(switch_xml_t xml, const char *attr);
void switch_xml_free(switch_xml_t xml);

switch_status_t switch_console_set_complete(const char *string);

/* switch_loadable_module.h, switch_console.h (SWITCH_STANDARD_STREAM), switch_core.h */
switch_status_t switch_api_execute(const char *cmd, const char *arg, switch_core_session_t *session, switch_stream_handle_t *stream);
switch_status_t switch_console_stream_write(switch_stream_handle_t *handle, const char *fmt, ...);
switch_status_t switch_console_stream_raw_write(switch_stream_handle_t *handle, uint8_t *data, switch_size_t datalen);
char *switch_core_get_uuid(void);
const char *switch_core_get_switchname(void);

void switch_log_printf(switch_text_channel_t channel, const char *file, const char *func, int line,
					   const char *userdata, switch_log_level_t level, const char *fmt, ...);

#endif
