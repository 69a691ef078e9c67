from scprob.data.simulate.hippocampus import simulate_hippocampus as simulate_hippocampus
from scprob.data.simulate.wing_disc import simulate_wing_disc as simulate_wing_disc
