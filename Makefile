# Letterhead: two commands on a fresh Debian 12 machine, as root.
#   make run   install everything, migrate, seed a demo tenant, start the stack
#   make test  install everything, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export LETTERHEAD_HOME ?= $(CURDIR)/var

DEBIAN_PACKAGES := postfix postfix-sqlite dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd \
	dovecot-sieve dovecot-managesieved dovecot-sqlite nginx haproxy openssl sqlite3 swaks pflogsumm \
	rspamd redis-server postsrsd postgresql postfix-pgsql dovecot-pgsql \
	ca-certificates python3-venv python3-pip systemd gcc python3-dev
# Only the test suite needs these: Chromium for the browser tests, dnsmasq as a loopback DNS server,
# pebble (with pebble-challtestsrv) as a private ACME server. bench/logins.py's nginx fronts need
# libnginx-mod-stream (nginx's stream module), which the stack no longer uses.
TEST_PACKAGES := chromium dnsmasq-base pebble libnginx-mod-stream
# `make test` runs these with the database on SQLite, then unit, web and e2e again on PostgreSQL.
UNIT_TEST_PATHS := tests/unit tests/web
DAEMON_TEST_PATHS := tests/integration tests/e2e tests/browser
# Playwright drives the system's Chromium; it must never fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run test install install-system install-test-system install-python lint down status clean

run: install
	@# The demo's postmaster (and abuse@, tls-reports@ the platform host) is alice's mailbox.
	@mkdir -p $(LETTERHEAD_HOME); touch $(LETTERHEAD_HOME)/letterhead.toml
	@grep -q '^postmaster_address' $(LETTERHEAD_HOME)/letterhead.toml || { \
		{ echo 'postmaster_address = "alice@demo.test"'; cat $(LETTERHEAD_HOME)/letterhead.toml; } \
			> $(LETTERHEAD_HOME)/letterhead.toml.new && \
		mv $(LETTERHEAD_HOME)/letterhead.toml.new $(LETTERHEAD_HOME)/letterhead.toml; }
	$(BIN)/letterhead db upgrade
	$(BIN)/letterhead demo
	$(BIN)/letterhead up
	@echo
	@echo "Letterhead is running from $(LETTERHEAD_HOME) (stop it with: make down)."
	@echo "Send a message to the demo mailbox (SMTP on 127.0.0.1:2525):"
	@echo "  swaks --server 127.0.0.1:2525 --from someone@example.org --to alice@demo.test"
	@echo "Send as alice through submission (STARTTLS on 2587, implicit TLS on 2465):"
	@echo "  swaks --server 127.0.0.1:2587 -tls --auth PLAIN --auth-user alice@demo.test --auth-password demo-password --from alice@demo.test --to info@demo.test"
	@echo "Read it over IMAP (2143, IMAPS 2993) or POP3 (2110, POP3S 2995):"
	@echo "  $(BIN)/python -c \"import imaplib; c=imaplib.IMAP4('127.0.0.1', 2143); c.login('alice@demo.test', 'demo-password'); print(c.select('INBOX'))\""
	@echo "Through nginx (default self-signed certificate): webmail https://127.0.0.1:8443/ (alice@demo.test), admin panel https://127.0.0.1:8443/admin, API docs https://127.0.0.1:8443/api/docs"
	@echo "Admin panel: http://127.0.0.1:8080/admin (full admin demo-admin, domain admin alice@demo.test; password demo-password)"
	@echo "Branded access: demo.test uses the brand mail.demo.test ('Demo Mail'); reach its webmail and panel by that name:"
	@echo "  curl --resolve mail.demo.test:8443:127.0.0.1 -k https://mail.demo.test:8443/"
	@echo "  (or add '127.0.0.1 mail.demo.test' to /etc/hosts and open https://mail.demo.test:8443/ and /admin)"
	@echo "CLI: $(BIN)/letterhead --help"

test: install install-test-system
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# In two processes (the machines' two cores). Tests with daemons go by module (--dist loadfile):
	@# each module's stack stays in one process, and most of their time is spent waiting on daemons.
	$(BIN)/pytest -q -n 2 $(UNIT_TEST_PATHS)
	$(BIN)/pytest -q -n 2 --dist loadfile $(DAEMON_TEST_PATHS)
	@# Again on PostgreSQL: everything that touches the database, on a private cluster.
	LETTERHEAD_TEST_DATABASE=postgresql $(BIN)/pytest -q -n 2 $(UNIT_TEST_PATHS)
	LETTERHEAD_TEST_DATABASE=postgresql $(BIN)/pytest -q -n 2 --dist loadfile tests/e2e

install: install-system install-python

# $(call install_missing,PACKAGES): apt-get install those of PACKAGES that are not installed yet.
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		apt-get update -q; \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
endef

install-system:
	$(call install_missing,$(DEBIAN_PACKAGES))
	@# Letterhead runs its own private instances; the system-wide ones would hold the ports.
	@if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
		systemctl disable --now dovecot nginx haproxy postfix rspamd redis-server postsrsd postgresql >/dev/null 2>&1 || true; fi
	@id vmail >/dev/null 2>&1 || useradd -r -u 5000 -d /nonexistent -s /usr/sbin/nologin vmail 2>/dev/null \
		|| useradd -r -d /nonexistent -s /usr/sbin/nologin vmail

install-test-system:
	$(call install_missing,$(TEST_PACKAGES))

COMPILED_PARTS_LOAD := $(BIN)/python -c 'from controlplane.logs.compiled import load; \
	assert all(load(name) for name in ("_postfix_lines", "_bind_rows", "_assemble"))'

install-python: $(BIN)/letterhead
	@# The log ingest's compiled parts, built again when their builds are gone or stale; a build
	@# that still fails (no compiler) stops here with pip's own account of why.
	@$(COMPILED_PARTS_LOAD) 2>/dev/null || $(BIN)/pip install -q -e '.[test]'
	@$(COMPILED_PARTS_LOAD) || { $(BIN)/pip install -v -e '.[test]' 2>&1 | grep -iE -A5 'error|warning: building' >&2; \
		echo "The log ingest's C parts did not build (gcc and python3-dev are needed)." >&2; exit 1; }

# setup.py builds the log parser's C part (controlplane/logs/*.c) into the checkout.
$(BIN)/letterhead: setup.cfg pyproject.toml setup.py $(wildcard controlplane/logs/*.c)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

down:
	$(BIN)/letterhead down

status:
	$(BIN)/letterhead status

clean:
	-$(BIN)/letterhead down
	rm -rf $(LETTERHEAD_HOME)
