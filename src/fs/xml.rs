//! Reading `<settings><param name=".." value=".."/>` from FreeSWITCH's XML registry.

use std::ffi::CStr;

use crate::ffi;

/// The `<settings>` params of `<configuration name="{file}">`, in file order,
/// or None when FreeSWITCH has no such configuration.
pub fn settings_params(file: &CStr) -> Option<Vec<(String, String)>> {
    let mut cfg: ffi::switch_xml_t = std::ptr::null_mut();
    // SAFETY: file is NUL-terminated, cfg is a valid out-pointer, params may be NULL.
    let root = unsafe { ffi::switch_xml_open_cfg(file.as_ptr(), &mut cfg, std::ptr::null_mut()) };
    if root.is_null() {
        return None;
    }
    let mut params = Vec::new();
    if !cfg.is_null() {
        // SAFETY: cfg is inside root, which stays valid (and read-locked) until switch_xml_free.
        let settings = unsafe { ffi::switch_xml_child(cfg, c"settings".as_ptr()) };
        if !settings.is_null() {
            // SAFETY: as above; `next` links the siblings of the same name.
            let mut param = unsafe { ffi::switch_xml_child(settings, c"param".as_ptr()) };
            while !param.is_null() {
                params.push((attr(param, c"name"), attr(param, c"value")));
                // SAFETY: param is a valid node of the tree.
                param = unsafe { (*param).next };
            }
        }
    }
    // SAFETY: root came from switch_xml_open_cfg and is freed once.
    unsafe { ffi::switch_xml_free(root) };
    Some(params)
}

fn attr(node: ffi::switch_xml_t, name: &CStr) -> String {
    // SAFETY: node is valid; switch_xml_attr_soft returns "" rather than NULL when absent.
    let v = unsafe { ffi::switch_xml_attr_soft(node, name.as_ptr()) };
    if v.is_null() {
        return String::new();
    }
    // SAFETY: non-null result is a NUL-terminated string owned by the tree.
    unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned()
}
