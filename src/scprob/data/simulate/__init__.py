from scprob.data.simulate.wing_disc import simulate_wing_disc as simulate_wing_disc
