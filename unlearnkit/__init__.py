"""unlearnkit: machine unlearning for PyTorch image classifiers, with honest evaluation.

    import unlearnkit as uk
    task = uk.make_task("mnist1d", forget="random:0.1", retain_access=0.3, seed=0)
    model = uk.train_model(uk.build_model("cnn1d", task), task, seed=0, progress=True)
    new = uk.get_unlearner("ft").unlearn(model, task, progress=True)
    uk.evaluate(new, task, attack="svc-confidence")
    model = uk.load_model("original.pt")   # a checkpoint written by `unlearnkit train` or `unlearn`

Plugin authors: `uk.validators` (config field validators), `uk.progress_bar`, `unlearnkit.testing`.
"""

from unlearnkit import validators
from unlearnkit.core import __version__
from unlearnkit.core.access import PopulationView, TaskView
from unlearnkit.core.config import config_class, load_toml, structure_config, unstructure_config
from unlearnkit.core.errors import (
    CheckpointError,
    ConfigError,
    DataAccessError,
    DivergenceError,
    DuplicateComponentError,
    NothingRemovedError,
    UnknownComponentError,
    UnlearnkitError,
    UsageError,
)
from unlearnkit.core.hookspecs import Register, hookimpl
from unlearnkit.core.interfaces import Audit, AuditResult, GradientCombiner, MembershipAttack, Sampler, Unlearner, resolve_device
from unlearnkit.core.registry import (
    build_model,
    get_attack,
    get_audit,
    get_combiner,
    get_sampler,
    get_unlearner,
    list_attacks,
    list_audits,
    list_combiners,
    list_datasets,
    list_models,
    list_samplers,
    list_unlearners,
)
from unlearnkit.data.datasets import ArrayDataset, DatasetBundle
from unlearnkit.data.recipe import TrainConfig
from unlearnkit.data.tasks import ForgetSpec, UnlearningTask, make_task, parse_forget
from unlearnkit.engine.checkpoint import load_checkpoint, save_checkpoint
from unlearnkit.engine.checkpoint import read_model as load_model
from unlearnkit.engine.evaluation import accuracy, attack_report, evaluate, gap, mia_efficacy, predict_logits
from unlearnkit.engine.progress import progress_bar
from unlearnkit.engine.stopping import StopMonitor, StopSettings
from unlearnkit.engine.training import BATCH_NORMS, batches, check_finite_loss, has_batch_norm, recompute_batch_norm, train_model
from unlearnkit.models import features_and_logits, penultimate_features
from unlearnkit.tune.space import Cell, SearchSpace

__all__ = [
    "ArrayDataset", "Audit", "AuditResult", "BATCH_NORMS", "Cell", "CheckpointError", "ConfigError", "DataAccessError", "DatasetBundle", "DivergenceError",
    "DuplicateComponentError", "ForgetSpec", "NothingRemovedError", "GradientCombiner", "MembershipAttack", "PopulationView", "Register", "Sampler", "SearchSpace", "StopMonitor", "StopSettings", "TaskView",
    "TrainConfig", "UnknownComponentError", "Unlearner", "UnlearnkitError", "UnlearningTask", "UsageError",
    "accuracy", "attack_report", "batches", "build_model", "check_finite_loss", "config_class", "evaluate", "features_and_logits", "gap", "get_attack", "has_batch_norm",
    "get_audit", "get_combiner", "get_sampler", "get_unlearner", "hookimpl", "list_attacks", "list_audits", "list_combiners",
    "list_datasets", "list_models", "list_samplers", "list_unlearners", "load_checkpoint", "load_model", "load_toml", "make_task",
    "mia_efficacy", "parse_forget", "penultimate_features", "predict_logits", "progress_bar", "recompute_batch_norm", "resolve_device",
    "save_checkpoint", "structure_config", "train_model", "unstructure_config", "validators",
]
