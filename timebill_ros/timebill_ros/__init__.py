"""The ROS 2 layer of TimeBill: nodes, client API and command line over the ``timebill`` core."""
