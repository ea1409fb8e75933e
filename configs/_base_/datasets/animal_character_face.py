# mmpose metainfo of the 28-point animal-character face layout (anime_face_detector's).
# It mirrors animal_landmarks_mm/schema.py, the one definition; tests/test_schema.py checks
# that the two agree. Colours are by group: contour, eyebrows, eyes, nose, mouth.
dataset_info = dict(
    dataset_name='animal_character_face',
    paper_info=dict(
        author='animal_landmarks_mm contributors',
        title='28-point face landmarks of anime and animal characters '
        '(anime_face_detector layout)',
        container='',
        year='2026',
        homepage='',
    ),
    keypoint_info={
        0:
        dict(
            name='temple_left', id=0, color=[255, 153, 51], type='upper',
            swap='temple_right'),
        1:
        dict(
            name='cheek_left', id=1, color=[255, 153, 51], type='upper',
            swap='cheek_right'),
        2:
        dict(
            name='chin', id=2, color=[255, 153, 51], type='upper',
            swap=''),
        3:
        dict(
            name='cheek_right', id=3, color=[255, 153, 51], type='upper',
            swap='cheek_left'),
        4:
        dict(
            name='temple_right', id=4, color=[255, 153, 51], type='upper',
            swap='temple_left'),
        5:
        dict(
            name='brow_left_outer', id=5, color=[153, 51, 255], type='upper',
            swap='brow_right_outer'),
        6:
        dict(
            name='brow_left_middle', id=6, color=[153, 51, 255], type='upper',
            swap='brow_right_middle'),
        7:
        dict(
            name='brow_left_inner', id=7, color=[153, 51, 255], type='upper',
            swap='brow_right_inner'),
        8:
        dict(
            name='brow_right_inner', id=8, color=[153, 51, 255], type='upper',
            swap='brow_left_inner'),
        9:
        dict(
            name='brow_right_middle', id=9, color=[153, 51, 255], type='upper',
            swap='brow_left_middle'),
        10:
        dict(
            name='brow_right_outer', id=10, color=[153, 51, 255], type='upper',
            swap='brow_left_outer'),
        11:
        dict(
            name='eye_left_upper_outer', id=11, color=[51, 153, 255], type='upper',
            swap='eye_right_upper_outer'),
        12:
        dict(
            name='eye_left_upper_top', id=12, color=[51, 153, 255], type='upper',
            swap='eye_right_upper_top'),
        13:
        dict(
            name='eye_left_upper_inner', id=13, color=[51, 153, 255], type='upper',
            swap='eye_right_upper_inner'),
        14:
        dict(
            name='eye_left_lower_outer', id=14, color=[51, 153, 255], type='upper',
            swap='eye_right_lower_outer'),
        15:
        dict(
            name='eye_left_lower_bottom', id=15, color=[51, 153, 255], type='upper',
            swap='eye_right_lower_bottom'),
        16:
        dict(
            name='eye_left_lower_inner', id=16, color=[51, 153, 255], type='upper',
            swap='eye_right_lower_inner'),
        17:
        dict(
            name='eye_right_upper_inner', id=17, color=[51, 153, 255], type='upper',
            swap='eye_left_upper_inner'),
        18:
        dict(
            name='eye_right_upper_top', id=18, color=[51, 153, 255], type='upper',
            swap='eye_left_upper_top'),
        19:
        dict(
            name='eye_right_upper_outer', id=19, color=[51, 153, 255], type='upper',
            swap='eye_left_upper_outer'),
        20:
        dict(
            name='eye_right_lower_inner', id=20, color=[51, 153, 255], type='upper',
            swap='eye_left_lower_inner'),
        21:
        dict(
            name='eye_right_lower_bottom', id=21, color=[51, 153, 255], type='upper',
            swap='eye_left_lower_bottom'),
        22:
        dict(
            name='eye_right_lower_outer', id=22, color=[51, 153, 255], type='upper',
            swap='eye_left_lower_outer'),
        23:
        dict(
            name='nose_tip', id=23, color=[255, 51, 153], type='upper',
            swap=''),
        24:
        dict(
            name='mouth_left', id=24, color=[51, 204, 102], type='upper',
            swap='mouth_right'),
        25:
        dict(
            name='upper_lip', id=25, color=[51, 204, 102], type='upper',
            swap=''),
        26:
        dict(
            name='mouth_right', id=26, color=[51, 204, 102], type='upper',
            swap='mouth_left'),
        27:
        dict(
            name='lower_lip', id=27, color=[51, 204, 102], type='upper',
            swap=''),
    },
    skeleton_info={
        0:
        dict(link=('temple_left', 'cheek_left'), id=0, color=[255, 153, 51]),
        1:
        dict(link=('cheek_left', 'chin'), id=1, color=[255, 153, 51]),
        2:
        dict(link=('chin', 'cheek_right'), id=2, color=[255, 153, 51]),
        3:
        dict(link=('cheek_right', 'temple_right'), id=3, color=[255, 153, 51]),
        4:
        dict(link=('brow_left_outer', 'brow_left_middle'), id=4, color=[153, 51, 255]),
        5:
        dict(link=('brow_left_middle', 'brow_left_inner'), id=5, color=[153, 51, 255]),
        6:
        dict(link=('brow_right_inner', 'brow_right_middle'), id=6, color=[153, 51, 255]),
        7:
        dict(link=('brow_right_middle', 'brow_right_outer'), id=7, color=[153, 51, 255]),
        8:
        dict(link=('eye_left_upper_outer', 'eye_left_upper_top'), id=8, color=[51, 153, 255]),
        9:
        dict(link=('eye_left_upper_top', 'eye_left_upper_inner'), id=9, color=[51, 153, 255]),
        10:
        dict(link=('eye_left_lower_outer', 'eye_left_lower_bottom'), id=10, color=[51, 153, 255]),
        11:
        dict(link=('eye_left_lower_bottom', 'eye_left_lower_inner'), id=11, color=[51, 153, 255]),
        12:
        dict(link=('eye_right_upper_inner', 'eye_right_upper_top'), id=12, color=[51, 153, 255]),
        13:
        dict(link=('eye_right_upper_top', 'eye_right_upper_outer'), id=13, color=[51, 153, 255]),
        14:
        dict(link=('eye_right_lower_inner', 'eye_right_lower_bottom'), id=14, color=[51, 153, 255]),
        15:
        dict(link=('eye_right_lower_bottom', 'eye_right_lower_outer'), id=15, color=[51, 153, 255]),
        16:
        dict(link=('mouth_left', 'upper_lip'), id=16, color=[51, 204, 102]),
        17:
        dict(link=('upper_lip', 'mouth_right'), id=17, color=[51, 204, 102]),
        18:
        dict(link=('mouth_left', 'lower_lip'), id=18, color=[51, 204, 102]),
        19:
        dict(link=('lower_lip', 'mouth_right'), id=19, color=[51, 204, 102]),
    },
    joint_weights=[1.] * 28,
    sigmas=[],
)
