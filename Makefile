# The two commands a new user needs: `make run` and `make test`. Both install
# what they need first (tools/scripts/setup.sh is idempotent).

# The pinned Node.js LTS that setup installs when the machine's is older
# (tools/node-runtime) comes first on PATH for every recipe.
export PATH := $(CURDIR)/.local/node/bin:$(PATH)

.PHONY: setup run test lint typecheck test-unit clean

setup:
	@bash tools/scripts/setup.sh

# node itself, not npx/tsx's launcher: that one exits 130 on Ctrl-C, which make reports as an error.
run: setup
	@exec node --import tsx tools/src/run.ts

lint: setup
	npx biome check .

typecheck: setup
	npm run typecheck --workspaces --if-present

test-unit: setup
	npx tsx tools/src/test-all.ts

test: lint typecheck test-unit

clean:
	rm -rf .local .data test-artifacts firmware/build cloud/dashboard/dist
