# Set-up and run targets. Every target installs what it needs, so a fresh
# Debian checkout needs nothing but python3 (with venv) and root for apt-get.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint bench bench-full bench-esl redis-server chromium clean install

# Install as a systemd service (README, "Operations"): the venv under /opt/ccd, the ccd user,
# /etc/ccd/ccd.toml and ccd.env, the unit, the docs. DESTDIR=... stages the files instead.
DESTDIR ?=
PREFIX  ?= /opt/ccd

$(STAMP): setup.cfg pyproject.toml
	@# Debian splits venv out of python3: install python3-venv when it is missing.
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
	  && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian's redis-server: tests and the demo start private instances of it.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing" >&2; exit 1; }

# Debian's chromium: the wallboard test drives the page in it (headless). When it cannot be
# installed, the test says so in one line and is skipped; nothing else needs it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "chromium could not be installed: the wallboard test will be skipped"

test: $(STAMP) redis-server chromium
	$(BIN)/python -m pytest

demo: $(STAMP) redis-server
	$(BIN)/python scripts/demo.py

# Routing benchmark (a few minutes): four points of issue 11's matrix, then ESL ingest.
bench: $(STAMP) redis-server
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_esl.py

# Every figure of issue 11 (~35 min): the whole matrix (agents x calls/s x backlog), a
# saturation search, one daemon against two, the resync stall and the RSS at scale.
bench-full: $(STAMP) redis-server
	$(BIN)/python scripts/bench.py --matrix --seconds 20
	$(BIN)/python scripts/bench.py --saturate --agents 5000 --seconds 15
	$(BIN)/python scripts/bench.py --scaling --agents 5000 --rate 200 --seconds 15
	$(BIN)/python scripts/bench.py --agents 20000 --rate 50 --seconds 30 --resync-interval 10
	$(BIN)/python scripts/bench.py --agents 20000 --backlog 10000 --rate 20 --seconds 10

# ESL ingest: recorded FreeSWITCH events replayed to ccd's client and greenswitch's.
bench-esl: $(STAMP)
	$(BIN)/python scripts/bench_esl.py

lint: $(STAMP)
	$(BIN)/ruff check ccd tests scripts
	$(BIN)/ruff format --check ccd tests scripts

install:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" PYTHON="$(PYTHON)" sh scripts/install.sh

clean:
	rm -rf $(VENV) *.egg-info
