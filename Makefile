# The two commands of the README, and their parts. Every target sets up what it needs first.
.PHONY: setup test demo clean

setup:
	./scripts/bootstrap.sh

test: setup
	./scripts/test.sh

demo: setup
	./scripts/demo.sh

clean:
	rm -rf .venv msg/build output
