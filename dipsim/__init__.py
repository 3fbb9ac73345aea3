"""DIP simulator: a faithful, fault-injecting double of the MHHS DIP for tests and demos.

async with run_simulator(SimulatorConfig.from_dev_pki(dir)) as sim:
    sim.base_url, sim.state, sim.set_faults(rate_429=0.1, seed=1)
"""

from dipsim.config import SenderConfig, SimulatorConfig
from dipsim.faults import FaultConfig
from dipsim.server import Simulator, run_simulator

__all__ = ["FaultConfig", "SenderConfig", "Simulator", "SimulatorConfig", "run_simulator"]
