"""The Franka FR3: its one URDF (`description`), MuJoCo forward kinematics (`kinematics`), camera mounts.

`generate_urdf` writes `urdf/fr3.urdf` from Franka's published kinematics; edit it, never the URDF.
"""
