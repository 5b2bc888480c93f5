/*
 * Prints the sizes, member offsets and constant values of the FreeSWITCH ABI
 * the module relies on, as the C compiler sees them through <switch.h>.
 * tests/abi_layout.rs compiles it against the bundled declarations and, where
 * one is installed, against FreeSWITCH's own headers, and compares.
 */
#include <stdio.h>
#include <stddef.h>
#include <switch.h>

#define SIZE(t) printf("size %s %zu\n", #t, sizeof(t))
#define OFF(t, m) printf("offset %s.%s %zu\n", #t, #m, offsetof(t, m))
#define VAL(c) printf("value %s %ld\n", #c, (long)(c))

int main(void)
{
	SIZE(switch_event_header_t);
	OFF(switch_event_header_t, name);
	OFF(switch_event_header_t, value);
	OFF(switch_event_header_t, next);
	SIZE(switch_event_t);
	OFF(switch_event_t, event_id);
	OFF(switch_event_t, subclass_name);
	OFF(switch_event_t, headers);
	OFF(switch_event_t, bind_user_data);
	SIZE(switch_stream_handle_t);
	OFF(switch_stream_handle_t, write_function);
	OFF(switch_stream_handle_t, data);
	OFF(switch_stream_handle_t, data_size);
	OFF(switch_stream_handle_t, data_len);
	OFF(switch_stream_handle_t, alloc_chunk);
	SIZE(switch_api_interface_t);
	OFF(switch_api_interface_t, interface_name);
	OFF(switch_api_interface_t, desc);
	OFF(switch_api_interface_t, function);
	OFF(switch_api_interface_t, syntax);
	SIZE(struct switch_xml);
	OFF(struct switch_xml, name);
	OFF(struct switch_xml, attr);
	OFF(struct switch_xml, next);
	OFF(struct switch_xml, sibling);
	OFF(struct switch_xml, child);
	SIZE(switch_loadable_module_function_table_t);
	OFF(switch_loadable_module_function_table_t, switch_api_version);
	OFF(switch_loadable_module_function_table_t, load);
	OFF(switch_loadable_module_function_table_t, shutdown);
	OFF(switch_loadable_module_function_table_t, runtime);
	OFF(switch_loadable_module_function_table_t, flags);
	SIZE(switch_status_t);
	SIZE(switch_event_types_t);
	SIZE(switch_bool_t);
	SIZE(switch_log_level_t);
	SIZE(switch_text_channel_t);
	SIZE(switch_module_interface_name_t);
	VAL(SWITCH_API_VERSION);
	VAL(SWITCH_STATUS_SUCCESS);
	VAL(SWITCH_STATUS_FALSE);
	VAL(SWITCH_STATUS_NOUNLOAD);
	VAL(SWITCH_EVENT_CUSTOM);
	VAL(SWITCH_API_INTERFACE);
	VAL(SWITCH_FALSE);
	VAL(SWITCH_TRUE);
	VAL(SWITCH_CHANNEL_ID_LOG);
	VAL(SWITCH_LOG_DEBUG);
	VAL(SWITCH_LOG_INFO);
	VAL(SWITCH_LOG_NOTICE);
	VAL(SWITCH_LOG_WARNING);
	VAL(SWITCH_LOG_ERROR);
	return 0;
}
