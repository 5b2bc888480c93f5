# mod_cc_events: build, install from source, or build the Debian package.
#
#   make                      build target/release/libmod_cc_events.so (the module
#                             alone: not the workspace's wallboard)
#   make install              build if cargo is available, then install the module
#                             and, unless one exists already, the sample config
#   make uninstall            remove the module (the config is left in place)
#   make deb                  build the .deb (cargo deb --strip; needs cargo-deb)
#   make test                 cargo test
#
# Install locations come from `pkg-config freeswitch` (modulesdir, confdir) and
# fall back to the Debian package layout. Override on the command line:
#   make install DESTDIR=/tmp/stage MODDIR=/usr/local/freeswitch/mod \
#                CONFDIR=/usr/local/freeswitch/conf

CARGO      ?= cargo
PKG_CONFIG ?= pkg-config
INSTALL    ?= install
STRIP      ?= strip

# Where cargo puts its output (honours CARGO_TARGET_DIR like cargo does).
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
SO         := $(TARGET_DIR)/release/libmod_cc_events.so
SAMPLE_CONF := conf/autoload_configs/cc_events.conf.xml

# pkg-config runs (once) only when MODDIR/CONFDIR are not given. Hand it
# PKG_CONFIG_PATH/PKG_CONFIG_LIBDIR also when they are given as make arguments
# (`make install PKG_CONFIG_PATH=...`), which $(shell) would not see.
PC_ENV := $(foreach v,PKG_CONFIG_PATH PKG_CONFIG_LIBDIR,$(if $(filter-out undefined,$(origin $(v))),$(v)='$($(v))'))
ifeq ($(origin MODDIR),undefined)
MODDIR := $(or $(strip $(shell $(PC_ENV) $(PKG_CONFIG) --variable=modulesdir freeswitch 2>/dev/null)),/usr/lib/freeswitch/mod)
endif
ifeq ($(origin CONFDIR),undefined)
CONFDIR := $(or $(strip $(shell $(PC_ENV) $(PKG_CONFIG) --variable=confdir freeswitch 2>/dev/null)),/etc/freeswitch)
endif

MOD_DEST  = $(DESTDIR)$(MODDIR)/mod_cc_events.so
CONF_DEST = $(DESTDIR)$(CONFDIR)/autoload_configs/cc_events.conf.xml

.PHONY: all build install uninstall deb test

all: build

# -p: the module only, with its own dependency features; `cargo build` at the
# top would also build cc-wallboard (wallboard/) and unify redis's features.
build:
	$(CARGO) build --release -p mod_cc_events

# `sudo make install` often runs without ~/.cargo/bin in PATH: then install
# what `make build` produced instead of failing.
install:
	@if command -v $(CARGO) >/dev/null 2>&1; then \
		echo "$(CARGO) build --release -p mod_cc_events"; $(CARGO) build --release -p mod_cc_events || exit 1; \
	elif [ -f "$(SO)" ]; then \
		echo "$(CARGO) not found in PATH; installing the existing $(SO)"; \
	else \
		echo "error: $(CARGO) not found and $(SO) missing: run 'make build' first" >&2; exit 1; \
	fi
	$(INSTALL) -d "$(DESTDIR)$(MODDIR)"
	$(INSTALL) -m 0755 -s --strip-program="$(STRIP)" "$(SO)" "$(MOD_DEST)"
	@echo "installed $(MOD_DEST)"
	$(INSTALL) -d "$(DESTDIR)$(CONFDIR)/autoload_configs"
	@if [ -e "$(CONF_DEST)" ]; then \
		echo "kept existing $(CONF_DEST) (not overwritten; compare with $(SAMPLE_CONF))"; \
	else \
		$(INSTALL) -m 0644 "$(SAMPLE_CONF)" "$(CONF_DEST)" && \
		echo "installed $(CONF_DEST)"; \
	fi
	@echo "to enable: add <load module=\"mod_cc_events\"/> to $(CONFDIR)/autoload_configs/modules.conf.xml, then 'reloadxml' and 'load mod_cc_events' in fs_cli"

uninstall:
	rm -f "$(MOD_DEST)"
	@echo "removed $(MOD_DEST)"
	@if [ -e "$(CONF_DEST)" ]; then \
		echo "left $(CONF_DEST) in place (your configuration); delete it by hand if no longer needed"; \
	fi

deb:
	$(CARGO) deb --strip

test:
	$(CARGO) test
