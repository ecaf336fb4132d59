"""The protocol and the simulation: replay, asynchrony, staleness, the server's data boundary,
and VAFL = SGD with one client and no delay."""

import numpy as np
import pytest
import torch

from paperzoo.vafl.config import FederationConfig
from paperzoo.vafl.federation import build_federation
from paperzoo.vafl.model import create_model
from paperzoo.vafl.privacy import EmbeddingBound
from paperzoo.vafl.protocol import GradReply, Upload, VaflClient, VaflServer, step_size
from paperzoo.vafl.simulation import SimRuntime, SyncRuntime

TINY = FederationConfig(preset="tiny", embed_dim=4, hidden=8, head_hidden=8, seed=3)


def _sim(data, budget=300, seed=3, delays="exp:1,2,4,8", config=TINY):
    federation = build_federation(data, FederationConfig(**{**config.__dict__, "seed": seed}))
    return federation, SimRuntime(delays, budget, seed, eval_every=100).run(federation)


def test_simulation_replays_bit_identically(digits_data):
    fed_a, run_a = _sim(digits_data)
    fed_b, run_b = _sim(digits_data)
    assert run_a.accuracy == run_b.accuracy
    assert run_a.update_counts == run_b.update_counts
    assert run_a.table_age == run_b.table_age and run_a.times == run_b.times
    assert torch.equal(fed_a.server.table, fed_b.server.table)
    for a, b in zip(fed_a.clients, fed_b.clients):
        for pa, pb in zip(a.model.parameters(), b.model.parameters()):
            assert torch.equal(pa, pb)
    _, run_c = _sim(digits_data, seed=4)
    assert run_c.update_counts != run_a.update_counts


def test_update_counts_follow_speeds_and_staleness_is_positive(digits_data):
    _, run = _sim(digits_data, budget=800)
    counts = run.update_counts
    assert sum(counts) == 800
    assert counts[0] > counts[1] > counts[2] > counts[3] > 0
    # exponential means 1:2:4:8 -> expected shares 8:4:2:1 of 15
    assert counts[0] / counts[3] == pytest.approx(8.0, rel=0.5)
    assert np.mean(run.table_age) > 10
    assert np.mean(run.message_delay) > 0
    assert max(run.message_delay) > 0


def test_server_runs_from_labels_alone():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (20,))
    head = create_model("tiny", in_dims=[5, 5], classes=3).head
    server = VaflServer(head, labels, num_clients=2, embed_dim=4, lr=0.1)
    for m in range(2):
        server.initialise(m, torch.randn(20, 4))
    reply = server.handle(Upload(1, torch.tensor([0, 3, 7]), torch.randn(3, 4), version=0))
    assert isinstance(reply, GradReply) and reply.grad.shape == (3, 4) and reply.client == 1
    assert server.iteration == 1 and server.update_counts == [0, 1]
    held = [v for v in vars(server).values() if isinstance(v, torch.Tensor)]
    assert all(t.shape[0] == 20 for t in held)  # only the table, its stamps and the labels


def test_server_refuses_uninitialised_table_and_bad_uploads():
    server = VaflServer(create_model("tiny", in_dims=[5, 5], classes=3).head, torch.zeros(10, dtype=torch.long), 2, 4)
    with pytest.raises(RuntimeError, match="not initialised"):
        server.handle(Upload(0, torch.tensor([0]), torch.zeros(1, 4), 0))
    for m in range(2):
        server.initialise(m, torch.zeros(10, 4))
    with pytest.raises(ValueError, match="unknown client 5"):
        server.handle(Upload(5, torch.tensor([0]), torch.zeros(1, 4), 0))
    with pytest.raises(ValueError, match="shape"):
        server.handle(Upload(0, torch.tensor([0]), torch.zeros(1, 3), 0))


def test_one_client_zero_delay_equals_plain_sgd():
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    model = create_model("tiny", in_dims=[6], classes=3)
    reference = create_model("tiny", in_dims=[6], classes=3)
    reference.load_state_dict(model.state_dict())
    lr = 0.1
    client = VaflClient(0, x, model.locals[0], lr=lr, batch_size=8, bound=EmbeddingBound(1.0, "none"), seed=5)
    server = VaflServer(model.head, y, 1, 4, lr=lr)
    server.initialise(0, client.release("train"))
    batches = torch.Generator().manual_seed(10_007 * 5)  # the client's batch stream
    optimizer = torch.optim.SGD(reference.parameters(), lr=lr)
    for _ in range(25):
        client.apply(server.handle(client.step()))
        idx = torch.randperm(64, generator=batches)[:8]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(reference([x[idx]]), y[idx]).backward()
        optimizer.step()
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_sim_runtime_with_one_client_and_no_delay_is_plain_sgd():
    """The real runtime (build_federation + SimRuntime, table initialisation and evaluations
    included) with one client: every message is answered before the next (message delay 0), so
    VAFL is plain SGD on the same model, batches and step size, checked after every server update."""
    import copy

    from paperzoo.vafl.data import make_vertical_data

    torch.manual_seed(0)
    x, y = torch.randn(80, 6), torch.randint(0, 3, (80,))
    data = make_vertical_data("one", x, y, parties=1, scheme="contiguous", seed=0)
    config = FederationConfig(preset="tiny", lr=0.1, batch_size=8, sigma=0.0, bound="none", seed=5)
    federation = build_federation(data, config)
    reference = copy.deepcopy(federation.vertical_model())
    optimizer = torch.optim.SGD(reference.parameters(), lr=config.lr)
    features, labels = data.train_parts[0], data.y_train
    batches = torch.Generator().manual_seed(10_007 * config.seed)  # client 0's batch stream
    checked = []

    def sgd_step(iteration, _time):
        idx = torch.randperm(data.num_train, generator=batches)[: config.batch_size]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(reference([features[idx]]), labels[idx]).backward()
        optimizer.step()
        for p, q in zip(federation.vertical_model().parameters(), reference.parameters()):
            assert torch.equal(p, q)  # bit for bit: the same operations on the same tensors
        checked.append(iteration)

    history = SimRuntime("const:1", budget=40, seed=0, eval_every=10).run(federation, callback=sgd_step)
    assert checked == list(range(1, 41)) and history.update_counts == [40]
    assert history.message_delay == [0] * 40 and history.table_age == [0.0] * 40
    assert len(history.iterations) == 5  # evaluations at 0, 10, ..., 40 left the parameters alone


def test_reply_must_match_its_forward_pass():
    x = torch.randn(16, 4)
    client = VaflClient(0, x, create_model("tiny", in_dims=[4], classes=2).locals[0], batch_size=4)
    upload = client.step()
    with pytest.raises(ValueError, match="no pending forward pass 7"):
        client.apply(GradReply(0, upload.indices, torch.zeros(4, 4), version=7, server_iteration=1))
    with pytest.raises(ValueError, match="addressed to client 1"):
        client.apply(GradReply(1, upload.indices, torch.zeros(4, 4), version=0, server_iteration=1))


def test_every_bounded_upload_has_norm_at_most_clip(digits_data):
    for bound in ("clip", "tanh"):
        config = FederationConfig(**{**TINY.__dict__, "clip": 0.5, "bound": bound})
        federation = build_federation(digits_data, config)
        federation.initialise()
        for _ in range(30):
            for client in federation.clients:
                upload = client.step()
                assert upload.embedding.norm(dim=-1).max() <= 0.5 + 1e-6
                client.apply(federation.server.handle(upload))


def test_sync_runtime_round_time_is_the_slowest_client(digits_data):
    federation = build_federation(digits_data, TINY)
    run = SyncRuntime("const:1,2,4,8", rounds=20, seed=0, eval_every=10).run(federation)
    assert run.times[-1] == pytest.approx(20 * 8.0)
    assert run.update_counts == [20, 20, 20, 20]
    assert max(run.message_delay) == 0


def test_dropout_client_sends_nothing_while_offline(digits_data):
    federation = build_federation(digits_data, TINY)
    arrivals = []
    SimRuntime("exp:1,1,1,1", 400, 0, dropout={2: [(20.0, 60.0)]}, eval_every=400).run(
        federation, callback=lambda k, t: arrivals.append((t, federation.server.staleness.client[-1])))
    during = [c for t, c in arrivals if 20.0 <= t < 60.0]
    assert during and 2 not in during
    assert any(c == 2 for t, c in arrivals if t >= 60.0)


def test_step_size_rules():
    assert step_size(0.5, 10, "constant", 100) == 0.5
    assert step_size(1.0, 100, "inverse", 100) == pytest.approx(0.5)
    assert step_size(1.0, 300, "inverse_sqrt", 100) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown step size rule"):
        step_size(1.0, 1, "cosine", 1)
