# edgeml_ros: `make demo` and `make test` set up everything they need (see tools/bootstrap.sh).
SHELL := /bin/bash
RUN := tools/run_in_env.sh
DEMO_ARGS ?=
TEST_ARGS ?=

.PHONY: setup demo test lint format train profiles bench bench-system bench-goodput bench-link \
	bench-scale bench-soak bench-dds faults policies evaluate oracle-bound regime-map clean

setup:
	@tools/bootstrap.sh

demo: setup
	@$(RUN) python -m edgeml_ros.cli demo $(DEMO_ARGS)

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

test: lint
	$(RUN) python -m pytest $(TEST_ARGS)

format: setup
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

# Re-create the committed checkpoints (each records its command in its metadata). The drone
# workload's ResNet-18 was trained on the CPU (about 2 hours on two loaded cores); the B-VGG and
# MobileNetV2 checkpoints with TRAIN_DEVICE=cuda (minutes on a GPU, hours on two CPU cores).
CKPT := edgeml_ros/checkpoints
TRAIN_DEVICE ?= cpu
train: setup
	$(RUN) python -m edgeml_ros.cli train --dataset drone_scenes --arch resnet18 --epochs 6 \
		--distill-weight 0.5 --degraded-fraction 0.4 --device $(TRAIN_DEVICE) \
		--out $(CKPT)/drone_scenes_resnet18.pt
	$(RUN) python -m edgeml_ros.cli train --epochs 10
	$(RUN) python -m edgeml_ros.cli train --arch b_vgg --width 0.5 --epochs 20 \
		--distill-weight 0.5 --device $(TRAIN_DEVICE) --out $(CKPT)/fashion_mnist_b_vgg.pt
	$(RUN) python -m edgeml_ros.cli train --arch resnet --width 1.0 --epochs 8 \
		--distill-weight 0.5 --out $(CKPT)/fashion_mnist_resnet.pt
	$(RUN) python -m edgeml_ros.cli train --arch mobilenet_v2 --width 1.0 --epochs 15 \
		--distill-weight 0.5 --device $(TRAIN_DEVICE) \
		--out $(CKPT)/fashion_mnist_mobilenet_v2.pt

# Measured profiles of the committed models on this machine (latency, bytes, exit confidences),
# each for the drone computer its workload emulates. Run it on an otherwise idle machine.
PROFILES := edgeml_ros/profiles
profiles: setup
	$(RUN) python -m edgeml_ros.cli profile --checkpoint $(CKPT)/drone_scenes_resnet18.pt \
		--device-class raspberry_pi_4 --out $(PROFILES)/drone_scenes_resnet18.json
	for m in b_vgg resnet mobilenet_v2; do \
		$(RUN) python -m edgeml_ros.cli profile --checkpoint $(CKPT)/fashion_mnist_$$m.pt \
			--device-class jetson_nano --out $(PROFILES)/fashion_mnist_$$m.json || exit 1; \
	done

# Benchmarks of the committed models (docs/results.md); pass options with BENCH_ARGS.
BENCH_ARGS ?=
bench: setup
	$(RUN) python -m edgeml_ros.cli bench models --json out/bench_models.json \
		--plot docs/bench_models_tradeoff.png --markdown docs/results.md $(BENCH_ARGS)
	$(RUN) python -m edgeml_ros.cli bench policy --json out/bench_policy.json

# The live system once per policy over a shaped link; writes docs/system_results.md.
bench-system: setup
	$(RUN) python -m edgeml_ros.cli bench system --json out/bench_system.json \
		--markdown docs/system_results.md --plot docs/bench_system.png $(BENCH_ARGS)

# Fault injection with real node processes: the link cut for 10 s, the base station killed and
# restarted, the controller killed, a camera burst at 10x; each prints its outcome and recovery
# time as a [fault] line (malformed messages and lying tensors: test/test_ros_nodes.py).
faults: setup
	$(RUN) python -m pytest -s -q test/test_faults.py

# One DDS hop per publication mode and subscriber executor (why the nodes publish synchronously
# and spin single-threaded).
bench-dds: setup
	$(RUN) python -m edgeml_ros.cli bench dds --json out/bench_dds.json $(BENCH_ARGS)

# Offload goodput over the shaped link at several rates (root: network namespaces + tc tbf).
bench-goodput: setup
	$(RUN) python -m edgeml_ros.cli bench goodput --json out/bench_goodput.json \
		--markdown docs/goodput_results.md --plot docs/bench_goodput.png $(BENCH_ARGS)

# The link monitor's estimate against a link shaped in steps (root); writes docs/link_results.md.
bench-link: setup
	$(RUN) python -m edgeml_ros.cli bench link --json out/bench_link.json \
		--markdown docs/link_results.md --plot docs/bench_link.png $(BENCH_ARGS)

# N drones against one base station (1, 2, 4, 8), and a 10-minute soak with memory growth.
bench-scale: setup
	$(RUN) python -m edgeml_ros.cli bench scale --json out/bench_scale.json $(BENCH_ARGS)
bench-soak: setup
	$(RUN) python -m edgeml_ros.cli bench soak --json out/bench_soak.json $(BENCH_ARGS)

# Re-train the committed controller policies in the simulator (minutes on two cores).
POLICIES := edgeml_ros/policies
policies: setup
	for w in drone fashion_mnist; do for a in ppo dqn edgeml_ddpg ppo_loop static planner; do \
		$(RUN) python -m edgeml_ros.cli policy train --agent $$a --workload $$w || exit 1; \
	done; done

# Score every policy on the test split of scenarios (simulated), for the drone workload and the
# Fashion-MNIST one; writes docs/policy_results.md and docs/policy_results_fashion_mnist.md.
evaluate: setup
	$(RUN) python -m edgeml_ros.cli evaluate --json out/evaluate.json --plots docs/evaluate \
		--markdown docs/policy_results.md $(EVALUATE_ARGS)
	$(RUN) python -m edgeml_ros.cli evaluate --workload fashion_mnist \
		--json out/evaluate_fashion_mnist.json --plots docs/evaluate_fashion_mnist \
		--markdown docs/policy_results_fashion_mnist.md $(EVALUATE_ARGS)

# How much of the oracle's lead any policy could reach: the learned policy, the planner, the best
# fixed one and the two oracles (the hindsight one, and one that knows the conditions but not the
# frames) on the test split, both workloads (simulated; the second oracle takes ~30 min a
# workload); writes docs/oracle_bound.md and docs/oracle_bound_fashion_mnist.md.
oracle-bound: setup
	for w in drone fashion_mnist; do \
		$(RUN) python -m edgeml_ros.cli evaluate --workload $$w --policy rl planner tuned_static \
			oracle conditions_oracle --json out/oracle_bound_$$w.json --plots '' \
			--markdown docs/oracle_bound$$(test $$w = drone || echo _$$w).md $(EVALUATE_ARGS) \
			|| exit 1; \
	done

# Where adapting pays: every policy against the best static configuration in steady cells of link
# rate x drone slowdown x inputs, each on sixteen draws of its frames (simulated; ~25 min a
# workload here), both workloads; writes docs/regime_map.md and docs/regime_map_fashion_mnist.md,
# the JSON behind each and their heatmaps.
regime-map: setup
	$(RUN) python -m edgeml_ros.cli evaluate --regime-map --policy rl rl_loop planner tuned_static \
		branchynet spinn ucb apparate cloud_jpeg --json docs/regime_map.json --plots docs/regime \
		--markdown docs/regime_map.md $(EVALUATE_ARGS)
	$(RUN) python -m edgeml_ros.cli evaluate --workload fashion_mnist --regime-map --policy rl \
		rl_loop planner tuned_static branchynet spinn ucb apparate \
		--json docs/regime_map_fashion_mnist.json --plots docs/regime_fashion_mnist \
		--markdown docs/regime_map_fashion_mnist.md $(EVALUATE_ARGS)

clean:
	rm -rf build install log .venv
