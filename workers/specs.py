"""Run specifications: one pydantic model per problem, the single source of parameter names,
types, defaults and bounds (design.md "Run parameters"). Used by `run-one`, by sweep validation
in study/spec/loading.py, and by the workers themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# numpy's RandomState (the authors' Gaussian matrix, the Haar rotation) takes seeds below 2**32.
MAX_MATRIX_SEED = 2**32 - 1


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # "nan" / "inf" text too

    seed: int = Field(0, ge=0, description="training / sampling seed (the replicate axis)")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: Any) -> Any:
        # pydantic reads true as 1 for int / float fields, and no parameter here is a flag: hand a
        # boolean on as its YAML spelling, which each field then refuses with its own expected type.
        if isinstance(data, dict):
            return {key: str(value).lower() if isinstance(value, bool) else value for key, value in data.items()}
        return data

    @classmethod
    def inactive(cls, params: Mapping[str, Any]) -> set[str]:
        """Fields a run with these parameters does not use (a feature switched off); none by default."""
        return set()

    @classmethod
    def own_parameters(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters a run really has: no None (an absent option) and nothing of an unused feature.
        `params` is a validated spec as a dict (model_dump); MLflow params of a child run are these."""
        unused = cls.inactive(params)
        return {key: value for key, value in params.items() if value is not None and key not in unused}


class _MatrixProblem(_Spec):
    """A random least-squares instance H̃ ∈ R^{m×n}, A = H̃ᵀH̃ (domain.md §1.1)."""

    n: int = Field(300, ge=2, le=20000)
    m: int | None = Field(None, ge=2, le=100000, description="measurements; from kappa via MP when absent")
    kappa: float | None = Field(None, gt=1.0, le=1e12, description="target condition number")
    spectrum: Literal["gaussian", "mp", "uniform", "loguniform"] = "gaussian"
    normalization: Literal["1/n", "1/m"] = "1/n"
    matrix_seed: int = Field(12, ge=0, le=MAX_MATRIX_SEED)
    edges: Literal["exact", "mp"] = "exact"


class DugdSpec(_MatrixProblem):
    """Deep-unfolded gradient descent. Defaults reproduce the authors' protocol (domain.md §1.4)."""

    problem: Literal["dugd"] = "dugd"
    T: int = Field(25, ge=1, le=1000)
    mode: Literal["dense", "eigen", "expected"] = "eigen"
    training: Literal["incremental", "full"] = "incremental"
    init: float | Literal["random", "auto"] = Field(
        "auto", description="initial step of every layer: auto = 2/(λ_min+λ_max) of the reference edges, "
                            "a number (the paper: 0.3), or random")
    lr: float = Field(0.002, gt=0.0, le=1e3)
    batch_size: int = Field(200, ge=1, le=100000)
    batches_per_generation: int = Field(500, ge=1, le=10_000_000)
    eval_samples: int = Field(10000, ge=1, le=1_000_000)
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    descent_eps: float | None = Field(None, ge=0.0, lt=1.0, description="descending constraints; off when absent")
    # Descending-constraint training (workers/descending.py); used only when descent_eps is set.
    dual_lr: float = Field(0.5, gt=0.0, le=1e3, description="dual ascent step eta_nu, once per epoch")
    descent_noise: float = Field(0.0, ge=0.0, le=1e3, description="iterate noise scale in training, layers t < T")
    descent_epochs: int = Field(40, ge=1, le=1_000_000, description="primal-dual epochs (dual step each)")
    descent_batches_per_epoch: int = Field(10, ge=1, le=1_000_000, description="Adam steps per epoch")

    @classmethod
    def inactive(cls, params: Mapping[str, Any]) -> set[str]:
        if params.get("descent_eps") is not None:
            # Primal-dual training (workers/dugd_run._run_descending) is its own protocol in float64 on
            # the eigenbasis; the run's info records the mode / training / dtype / device it used.
            return {"mode", "training", "batches_per_generation", "eval_samples", "dtype", "device"}
        unused = set(DESCENT_FIELDS)
        if params.get("mode") == "expected":  # the exact expected loss: no batches, NumPy float64 on the CPU
            unused |= {"batch_size", "dtype", "device"}
        return unused


DESCENT_FIELDS = ("descent_eps", "dual_lr", "descent_noise", "descent_epochs", "descent_batches_per_epoch")


class ChgdSpec(_MatrixProblem):
    """Chebyshev-step GD against baselines, no training (domain.md §2.6)."""

    problem: Literal["chgd"] = "chgd"
    m: int | None = Field(None, ge=2, le=100000,
                          description="measurements; without m and kappa, 3n/2 (CHGD_MSE.ipynb's 300x450)")
    matrix_seed: int = Field(32, ge=0, le=MAX_MATRIX_SEED)
    T: int = Field(16, ge=1, le=1000)
    iterations: int = Field(100, ge=1, le=100000)
    x0_basis: Literal["eigen", "original"] = Field(
        "eigen", description="x0 ~ N(1, I) in A's eigen coordinates (CHGD_MSE.ipynb) or in the original ones")


class PsorSpec(_Spec):
    """Periodical successive over-relaxation on a fixed-point problem (domain.md §5)."""

    problem: Literal["psor"] = "psor"
    fixed_point: Literal["jacobi", "ista", "gram"] = Field(
        "jacobi", description="jacobi (Jacobi.ipynb), ista (LASSO) or gram: f(x) = Ax + b, A = GᵀG/‖GᵀG‖_F (DU-PSOR.ipynb)")
    n: int = Field(512, ge=2, le=20000)
    T: int = Field(8, ge=1, le=1000)
    iterations: int = Field(25, ge=1, le=100000)
    omega: Literal["plain", "constant", "chebyshev", "chebyshev_local", "learned"] = Field(
        "chebyshev", description="chebyshev: Chebyshev ω once the active set has settled (nonlinear maps; "
                                 "the periodic schedule on linear ones); chebyshev_local: the periodic schedule from k = 0")
    matrix_seed: int = Field(0, ge=0, le=MAX_MATRIX_SEED, description="instance seed (numpy default_rng)")
    eval_samples: int = Field(8, ge=1, le=100000, description="x0 samples averaged in error curves")
    x0_around: Literal["origin", "fixed_point", "random_rhs"] = Field(
        "origin", description="x0 = (0 or x*) + x0_scale·N(0, I); random_rhs (linear maps, DU-Book): x0 = 0 "
                              "with a fresh rhs x0_scale·N(0, I) per sample, i.e. x0 − x* = −x*(rhs)")
    x0_scale: float = Field(1.0, gt=0.0, le=1e6, description="small with x0_around=fixed_point: the local regime")
    # Jacobi (domain.md §5.4): P = MᵀM + jacobi_shift·I, M_ij ~ N(0, entry_std²).
    entry_std: float = Field(0.03, gt=0.0, le=10.0)
    jacobi_shift: float = Field(1.0, gt=0.0, le=1e6, description="1 (Jacobi.ipynb) or 0.15 (DU-PSOR-Jacobi.ipynb)")
    rhs: Literal["zero", "gaussian"] = Field("zero", description="q = 0 (x* = 0, the notebook) or q ~ N(0, I)")
    # ISTA on LASSO (domain.md §5.3): y = H̃x + noise, x planted sparse, H̃_ij ~ N(0, 1/m).
    m: int | None = Field(None, ge=2, le=100000, description="ISTA measurements; n // 2 when absent")
    sparsity: float = Field(0.1, gt=0.0, le=1.0, description="ISTA planted support fraction")
    lam: float = Field(0.2, gt=0.0, le=1e6, description="LASSO weight; the ISTA threshold is beta * lam")
    beta: float | None = Field(None, gt=0.0, le=1e6, description="ISTA step; 1 / lambda_max(H̃ᵀH̃) when absent")
    noise_std: float = Field(0.0, ge=0.0, le=1e3, description="ISTA measurement noise")
    # Learned omega (deep-unfolded PSOR, domain.md §5.5): incremental depth 1..train_depth, one Adam.
    lr: float = Field(0.01, gt=0.0, le=1e3)
    batch_size: int = Field(50, ge=1, le=100000)
    steps_per_depth: int = Field(40, ge=1, le=1_000_000)
    train_depth: int | None = Field(None, ge=1, le=100000, description="deepest trained network; T when absent, "
                                                                        "beyond T the periodic ω is unrolled further (DU-Book: 10 or 20)")
    omega_init: float = Field(1.0, gt=0.0, le=100.0)
    omega_loss: Literal["relative", "mse"] = Field(
        "relative", description="mean ‖x_d − x*‖²/‖x_0 − x*‖² (scale-free) or mean ‖x_d − x*‖² (DU-Book)")

    @model_validator(mode="after")
    def _random_rhs_needs_a_linear_map(self) -> "PsorSpec":
        if self.x0_around == "random_rhs" and self.fixed_point == "ista":
            raise ValueError("x0_around: got 'random_rhs' with fixed_point 'ista', expected jacobi or gram (a linear map)")
        return self

    @classmethod
    def inactive(cls, params: Mapping[str, Any]) -> set[str]:
        fixed_point = params.get("fixed_point")
        if fixed_point == "jacobi":
            unused = set(ISTA_FIELDS)
        elif fixed_point == "gram":
            unused = set(ISTA_FIELDS) | {"entry_std", "jacobi_shift"}
        else:
            unused = set(JACOBI_FIELDS)
        if params.get("omega") != "learned":
            unused |= set(LEARNED_OMEGA_FIELDS)
        return unused


JACOBI_FIELDS = ("entry_std", "jacobi_shift", "rhs")
ISTA_FIELDS = ("m", "sparsity", "lam", "beta", "noise_std")
LEARNED_OMEGA_FIELDS = ("lr", "batch_size", "steps_per_depth", "train_depth", "omega_init", "omega_loss")


UNROLLING_STEPS = ("1/L", "2/(mu+L)", "1.5/L", "1.9/L", "chebyshev")


class UnrollingSpec(_MatrixProblem):
    """The curse of unrolling (Scieur et al., domain.md §6): how the Jacobian error of GD with a constant
    step h, or of the Chebyshev method, evolves with the iteration count on A = H̃ᵀH̃ (ridge θ at 0)."""

    problem: Literal["unrolling"] = "unrolling"
    m: int | None = Field(None, ge=2, le=100000,
                          description="measurements; without m and kappa, 3n/2 (CHGD_MSE.ipynb's 300x450, κ = 88)")
    matrix_seed: int = Field(32, ge=0, le=MAX_MATRIX_SEED)
    step: float | Literal["1/L", "2/(mu+L)", "1.5/L", "1.9/L", "chebyshev"] = Field(
        "2/(mu+L)", description="GD's constant step h (a number is h·L, in (0, 2)), or chebyshev: the degree-t "
                                "minimax polynomial at every t")
    iterations: int = Field(400, ge=1, le=5000)

    @field_validator("step")
    @classmethod
    def _step_converges(cls, step: float | str) -> float | str:
        if isinstance(step, float) and not 0.0 < step < 2.0:
            raise ValueError(f"h·L in (0, 2) (GD diverges from h = 2/L on) or one of {', '.join(UNROLLING_STEPS)}")
        return step


class ListaSpec(_Spec):
    """LISTA sparse coding with descending constraints, as RobustUnrolling trains it (workers/lista.py).
    Sizes default small (tests); the authors' (n = 1024, m = 1228, L = 10) are in configs/lista-descending.yaml."""

    problem: Literal["lista"] = "lista"
    model: Literal["unconstrained", "noisy", "constrained"] = Field(
        "constrained", description="LISTA; LISTA trained with noisy layer outputs; constrained and trained with them")
    n: int = Field(32, ge=2, le=4096, description="signal length (theirs: 1024 grey pixels)")
    m: int | None = Field(None, ge=2, le=8192, description="code length; int(1.2 n) when absent (theirs)")
    layers: int = Field(10, ge=1, le=100)
    matrix_seed: int = Field(0, ge=0, le=MAX_MATRIX_SEED, description="dictionary and data seed")
    sparsity: float = Field(0.1, gt=0.0, le=1.0, description="planted code support fraction of m")
    snr_db: float | None = Field(None, ge=-20.0, le=200.0, description="signal noise; none when absent (theirs)")
    alpha: float = Field(0.5, gt=0.0, le=1e3, description="LASSO weight of the ISTA targets")
    ista_iterations: int = Field(500, ge=1, le=100_000, description="ISTA iterations giving the targets z* (theirs: 3000)")
    train_samples: int = Field(1024, ge=1, le=1_000_000)
    valid_samples: int = Field(256, ge=1, le=1_000_000, description="best-validation checkpoint, as theirs")
    test_samples: int = Field(512, ge=1, le=1_000_000)
    batch_size: int = Field(128, ge=1, le=100_000)
    epochs: int = Field(40, ge=1, le=100_000)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    eps: float = Field(0.05, ge=0.0, lt=1.0, description="descent margin: mean ratio <= 1 - eps")
    dual_lr: float = Field(1.0, gt=0.0, le=1e3, description="dual ascent step, once per epoch (theirs 1e-3 x 5000 epochs)")
    train_noise: float = Field(1.0, ge=0.0, le=1e3, description="layer-output noise in training, x log||grad f||")
    beta: float = Field(10.0, gt=0.0, le=1e6, description="test perturbation of the headline scalars")
    ood_level: float = Field(0.3, gt=0.0, le=10.0, description="test input-noise std of the headline OOD scalar")

    @classmethod
    def inactive(cls, params: Mapping[str, Any]) -> set[str]:
        model = params.get("model", "constrained")
        unused = set() if model == "constrained" else {"eps", "dual_lr"}
        return unused | ({"train_noise"} if model == "unconstrained" else set())


class ProbeSpec(_Spec):
    """A diagnostic run of known cost and outcome: for benchmarks and fault-injection tests."""

    problem: Literal["probe"] = "probe"
    work_s: float = Field(0.0, ge=0.0, le=3600.0, description="seconds of CPU work")
    fail: Literal["none", "raise", "nan"] = "none"
    x: float = Field(0.0, description="a free number reported back as `value` (for search tests)")


RunSpec = Annotated[Union[DugdSpec, ChgdSpec, PsorSpec, UnrollingSpec, ListaSpec, ProbeSpec], Field(discriminator="problem")]
SPEC_CLASSES: dict[str, type[_Spec]] = {
    "dugd": DugdSpec,
    "chgd": ChgdSpec,
    "psor": PsorSpec,
    "unrolling": UnrollingSpec,
    "lista": ListaSpec,
    "probe": ProbeSpec,
}


def own_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """A validated spec's own parameters (see _Spec.own_parameters), for its problem."""
    spec_class = SPEC_CLASSES.get(str(params.get("problem")), _Spec)
    return spec_class.own_parameters(params)
